"""A fault-injecting HTTP proxy on 127.0.0.1, between boto3 and a real S3 protocol server.

Each request is forwarded to the server and its answer returned, except that, at random (seeded):

    refuse   the proxy answers 503 SlowDown without forwarding (the server never saw the request)
    drop     the server handles the request, then the proxy closes the connection instead of
             answering (the write landed; the client sees a broken connection and retries)

`log` keeps (method, path, status the server gave, what the proxy did) for every request, so a
test can count, for instance, how many PUTs of one key the server accepted.
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}
_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class FaultProxy:
    def __init__(self, upstream: str, *, refuse: float = 0.0, drop: float = 0.0, seed: int = 0) -> None:
        target = urlparse(upstream)
        self.upstream = (target.hostname or "127.0.0.1", target.port or 80)
        self.refuse, self.drop = refuse, drop
        self.rng, self.rng_lock = random.Random(seed), threading.Lock()
        self.log: list[tuple[str, str, int | None, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                fault = proxy._draw()
                if fault == "refuse":
                    proxy.log.append((self.command, self.path, None, "refused"))
                    self._answer(503, [("Content-Type", "application/xml")], _SLOW_DOWN)
                    return
                connection = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                connection.close()
                if fault == "drop":
                    proxy.log.append((self.command, self.path, response.status, "dropped"))
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
                delivered = self._answer(response.status, headers, data)
                # an answer the client never read counts as dropped, however it was lost
                proxy.log.append(
                    (self.command, self.path, response.status, "answered" if delivered else "dropped")
                )

            def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> bool:
                """Send a whole answer; False when the client's connection broke on the way."""
                try:
                    self.send_response(status)
                    for name, value in headers:
                        if name.lower() != "content-length":
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                    self.wfile.flush()
                    return True
                except OSError:
                    self.close_connection = True
                    return False

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _draw(self) -> str | None:
        with self.rng_lock:
            roll = self.rng.random()
        if roll < self.refuse:
            return "refuse"
        if roll < self.refuse + self.drop:
            return "drop"
        return None

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
