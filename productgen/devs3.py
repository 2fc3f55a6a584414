"""moto's S3 server in a background thread, for tests: spoken to over HTTP like MinIO.

Its data lives in this process's memory; tests use it for what only it offers here (bucket
versioning, to count every write). The laptop's server, `productgen dev s3`, is the disk-backed
productgen.disks3. Real MinIO for users comes with infra/docker-compose.yml.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

__all__ = ["LocalS3", "free_port", "start_local_s3"]

# moto accepts any credentials; these only satisfy boto3's chain
DEV_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "productgen", "AWS_SECRET_ACCESS_KEY": "productgen-dev-secret"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class LocalS3:
    server: object  # moto.server.ThreadedMotoServer
    url: str

    @property
    def env(self) -> dict[str, str]:
        """The AWS_* variables that point boto3 (and productgen) at this server."""
        return {"AWS_ENDPOINT_URL": self.url, **DEV_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"}

    def stop(self) -> None:
        self.server.stop()
        self.server._server.server_close()  # free the port now: a restart may reuse it


def start_local_s3(port: int | None = None, host: str = "127.0.0.1") -> LocalS3:
    """Start moto's S3 server in a background thread on host:port (a free port when None)."""
    from moto.server import ThreadedMotoServer

    port = port or free_port(host)
    with socket.socket() as probe:  # moto's thread would die silently on a busy port
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself binds
        try:
            probe.bind((host, port))
        except OSError as e:
            raise OSError(
                f"cannot start the local S3 server on {host}:{port} ({e.strerror}); pick another --port"
            ) from None
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    return LocalS3(server, f"http://{host}:{port}")
