"""A local S3-compatible server (moto's) for laptops and tests, spoken to over HTTP like MinIO.

Data lives in this process's memory. With a data folder, `save` writes every bucket there (one
LocalStore per bucket, metadata and content types kept) and `restore` loads it back, so a laptop's
demo store survives a restart. Real MinIO for users comes with infra/docker-compose.yml.
"""

from __future__ import annotations

import logging
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

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

    def save(self, folder: Path, workers: int = 16) -> int:
        """Write every object of every bucket to folder/<bucket>/ (replacing what was there)."""
        from productgen.storage import LocalStore, S3Settings, S3Store, s3_client

        saved = 0
        buckets = s3_client(S3Settings(endpoint_url=self.url)).list_buckets().get("Buckets", [])
        for bucket in [b["Name"] for b in buckets]:
            target = folder / bucket
            staging = folder / f".{bucket}.saving"
            shutil.rmtree(staging, ignore_errors=True)
            saved += _copy(
                S3Store(bucket, "", S3Settings(endpoint_url=self.url)), LocalStore(staging), workers
            )
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        return saved

    def restore(self, folder: Path, workers: int = 16) -> int:
        """Load folder/<bucket>/ (written by `save`) into the server's buckets."""
        from productgen.storage import LocalStore, S3Settings, S3Store

        if not folder.is_dir():
            return 0
        restored = 0
        for path in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            target = S3Store(path.name, "", S3Settings(endpoint_url=self.url), create_bucket=True)
            restored += _copy(LocalStore(path), target, workers)
        return restored


def _copy(source, target, workers: int) -> int:
    """Copy every object with its content type and metadata; returns how many."""

    def one(key: str) -> None:
        head = source.head(key)
        target.put(key, source.get(key), content_type=head.content_type or "application/octet-stream",
                   metadata=head.metadata)  # fmt: skip

    keys = [obj.key for obj in source.list()]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, keys))
    return len(keys)


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
