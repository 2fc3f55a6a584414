"""The laptop's S3 server: the storage contract over HTTP, and no acknowledged write lost to kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from productgen.devs3 import DEV_CREDENTIALS, free_port
from productgen.disks3 import DiskS3
from productgen.storage import PreconditionFailed, S3Settings, StorageError, download_uri, open_store


@pytest.fixture
def disk_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for key, value in DEV_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = DiskS3(tmp_path / "data").start()
    yield server
    server.stop()


def test_objects_metadata_and_conditional_writes(disk_s3: DiskS3, tmp_path: Path) -> None:
    settings = S3Settings(endpoint_url=disk_s3.url)
    store = open_store("s3://renders/v1", settings, create_bucket=True)
    etag = store.put("a/b.png", b"png", content_type="image/png", cache_control="max-age=60",
                     metadata={"sku": "A", "sha256": "f" * 64})  # fmt: skip
    head = store.head("a/b.png")
    assert (head.size, head.etag, head.content_type, head.metadata) == (
        3,
        etag,
        "image/png",
        {"sku": "A", "sha256": "f" * 64},
    )
    assert store.get("a/b.png") == b"png" and store.head("a/none.png") is None
    with pytest.raises(PreconditionFailed):
        store.put("a/b.png", b"other", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.put("a/b.png", b"other", if_match="0" * 32)
    assert store.put("a/b.png", b"new", if_match=etag) and store.get("a/b.png") == b"new"
    store.delete("a/b.png")
    with pytest.raises(StorageError, match="no such object"):
        store.get("a/b.png")
    with pytest.raises(StorageError, match="the bucket does not exist"):
        open_store("s3://no-such-bucket", settings)
    # the data is plain files, and a ranged GET reads part of an object
    store.put("c.txt", b"0123456789")
    assert (tmp_path / "data" / "renders" / "v1" / "c.txt").read_bytes() == b"0123456789"
    request = urllib.request.Request(f"{disk_s3.url}/renders/v1/c.txt", headers={"Range": "bytes=2-4"})
    with urllib.request.urlopen(request) as response:
        assert response.status == 206 and response.read() == b"234"
    download_uri("s3://renders/v1/c.txt", tmp_path / "c.txt", settings)
    assert (tmp_path / "c.txt").read_bytes() == b"0123456789"


def test_listing_pages_and_prefixes(disk_s3: DiskS3) -> None:
    store = open_store("s3://many", S3Settings(endpoint_url=disk_s3.url), create_bucket=True)
    for i in range(2100):  # three ListObjectsV2 pages
        store.put(f"k/{i:05d}", b"x")
    store.put("other/a b+c.txt", b"y")  # a key that needs URL encoding in the listing
    keys = [o.key for o in store.list("k/")]
    assert keys == [f"k/{i:05d}" for i in range(2100)]
    assert [o.key for o in store.list("other/")] == ["other/a b+c.txt"] and len(list(store.list())) == 2101


def _serve(data: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, **DEV_CREDENTIALS}
    process = subprocess.Popen(
        [sys.executable, "-m", "productgen", "dev", "s3", "--port", str(port), "--data", str(data)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while b"local S3 server on" not in log.read_bytes():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return process


@pytest.mark.slow
def test_no_acknowledged_write_is_lost_to_kill_9(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in DEV_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    port = free_port()
    server = _serve(tmp_path / "data", port, tmp_path / "first.log")
    settings = S3Settings(endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1)
    store = open_store("s3://demo/p", settings, create_bucket=True)
    acknowledged = {}
    for i in range(300):
        key = f"img/{i:04d}.png"
        acknowledged[key] = store.put(key, os.urandom(200), metadata={"sku": f"S{i}"})
    server.send_signal(signal.SIGKILL)  # no chance to save anything
    server.wait(10)
    again = _serve(tmp_path / "data", port, tmp_path / "second.log")
    try:
        assert "300 objects" in (tmp_path / "second.log").read_text()
        listed = {o.key: o.etag for o in open_store("s3://demo/p", settings).list()}
        assert listed == acknowledged
        assert store.head("img/0007.png").metadata == {"sku": "S7"}
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(10) == 0
