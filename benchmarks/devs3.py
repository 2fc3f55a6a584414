"""Benchmark: the laptop's disk-backed S3 server at the demo's scale (70,000 objects).

Prints PUT/s from 16 threads (baseline in the same run: moto's in-memory server, which `productgen
dev s3` used before), then the disk server's stop and start times with all objects in place (a
start indexes every bucket's keys; nothing is saved or restored).

    .venv/bin/python benchmarks/devs3.py [--objects 70000] [--moto-objects 10000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from productgen.devs3 import DEV_CREDENTIALS, start_local_s3
from productgen.disks3 import DiskS3
from productgen.storage import S3Settings, open_store


def _fill(url: str, objects: int, body: bytes) -> float:
    """PUT `objects` objects from 16 threads; returns PUTs per second."""
    store = open_store("s3://bench/p", S3Settings(endpoint_url=url), create_bucket=True)
    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(lambda i: store.put(f"v1/{i:06d}.png", body, metadata={"sku": f"S{i}"}), range(objects))
        )
    return objects / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=70_000)
    parser.add_argument("--moto-objects", type=int, default=10_000)
    args = parser.parse_args()
    os.environ.update({**DEV_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"})
    body = os.urandom(1500)  # about a 32 px PNG
    moto = start_local_s3()
    try:
        moto_rate = _fill(moto.url, args.moto_objects, body)
    finally:
        moto.stop()
    with tempfile.TemporaryDirectory(prefix="bench-devs3-") as tmp:
        server = DiskS3(Path(tmp)).start()
        disk_rate = _fill(server.url, args.objects, body)
        started = time.perf_counter()
        server.stop()
        stop_s = time.perf_counter() - started
        started = time.perf_counter()
        again = DiskS3(Path(tmp)).start()
        start_s = time.perf_counter() - started
        listed = len(list(open_store("s3://bench/p", S3Settings(endpoint_url=again.url)).list()))
        again.stop()
    print(f"moto (in memory), {args.moto_objects:,} PUTs: {moto_rate:,.0f} PUT/s")
    ratio = disk_rate / moto_rate
    print(f"disk server, {args.objects:,} PUTs: {disk_rate:,.0f} PUT/s ({ratio:.2f}x moto)")
    print(
        f"disk server with {args.objects:,} objects: stop {stop_s:.2f} s, start {start_s:.2f} s, "
        f"listed {listed:,}"
    )


if __name__ == "__main__":
    main()
