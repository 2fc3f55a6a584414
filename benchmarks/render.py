"""Benchmark: publish demo-catalog SKUs to the local S3 server, against a naive loop; then 1% changed.

The S3 server (`productgen dev s3`) runs in its own process, as MinIO would. Baseline in the same
run: for each SKU generate one image, encode it, put_object, next. Then the pipeline publishes
every SKU to a fresh prefix, and once more after 1% of the titles changed (only those should go).

    python benchmarks/render.py [--model RUN_DIR] [--rows 10000] [--naive 500]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from productgen.catalog import build_demo_catalog, load_fashion_mnist
from productgen.catalog.fashion_mnist import FashionMNISTSource
from productgen.catalog.ingest import ingest
from productgen.devs3 import DEV_CREDENTIALS, free_port
from productgen.publish import CACHE_CONTROL, PublishConfig, image_key, publish
from productgen.render import RenderConfig, RenderPipeline, encode_image
from productgen.runs import RunFolder
from productgen.snapshot import Snapshot
from productgen.storage import S3Settings, open_store
from productgen.text import EncodeConfig, TextEncoder, encode_snapshot


def naive(snapshot: Path, pipeline: RenderPipeline, store, n: int) -> float:
    """One SKU at a time: generate, encode, put_object. Returns images/s."""
    conditions, rows = pipeline.snapshot_conditions(snapshot)
    config = RenderConfig()
    started = time.perf_counter()
    for i in range(n):
        sku = rows["sku"].iloc[i]
        pixels = pipeline(conditions=conditions[i : i + 1], seeds=pipeline.seeds([sku])).images[0]
        body = encode_image(pixels, config)
        store.put(
            image_key(pipeline.version, sku, 0, "png"), body, content_type="image/png",
            cache_control=CACHE_CONTROL, metadata={"sku": sku, "sha256": hashlib.sha256(body).hexdigest()},
        )  # fmt: skip
    return n / (time.perf_counter() - started)


def store_ceiling(store, body: bytes, n: int, workers: int) -> float:
    """The store alone: `n` parallel puts of ready bytes, nothing rendered. Returns puts/s."""
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda i: store.put(f"ceiling/{i}.png", body, content_type="image/png"), range(n)))
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=None, help="run folder (default: newest make demo run)")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--naive", type=int, default=500, help="SKUs for the naive loop")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--changed", type=float, default=0.01)
    args = parser.parse_args()
    if args.model is None:
        runs = [RunFolder(p) for p in sorted(Path("build/pipeline/runs").glob("*"))]
        runs = [run.root for run in runs if run.model.is_file()]
        if not runs:
            raise SystemExit("no pipeline model: run `make demo` first or pass --model RUN_DIR")
        args.model = runs[-1]

    port = free_port()
    env = {**os.environ, **DEV_CREDENTIALS}
    server = subprocess.Popen(
        [sys.executable, "-m", "productgen", "dev", "s3", "--port", str(port), "--bucket", "bench"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    server.stdout.readline()  # the server prints its URL once it listens
    os.environ.update(DEV_CREDENTIALS)
    settings = S3Settings(endpoint_url=f"http://127.0.0.1:{port}", max_pool_connections=args.workers)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp_name:
            tmp = Path(tmp_name)
            demo = build_demo_catalog(
                load_fashion_mnist(FashionMNISTSource.from_env(os.environ)), tmp / "demo", limit=args.rows
            )
            ingest(demo.catalog_parquet, tmp / "snap1")
            encoder = TextEncoder(EncodeConfig())
            encode_snapshot(tmp / "snap1", Path("build/embedding-cache"), EncodeConfig(), encoder=encoder)
            pipeline = RenderPipeline.from_run(args.model)
            print(f"model {pipeline.version} ({args.model}), {args.rows:,} SKUs, S3 {settings.endpoint_url}")

            base = naive(tmp / "snap1", pipeline, open_store("s3://bench/naive", settings), args.naive)
            print(f"naive loop (generate 1, encode, put_object): {base:,.0f} img/s over {args.naive} SKUs")

            store = open_store("s3://bench/pipeline", settings)
            config = PublishConfig(upload_workers=args.workers)
            first = publish(tmp / "snap1", pipeline, store, config)
            body = store.get(f"{pipeline.version}/{Snapshot(tmp / 'snap1').read_rows(['sku']).sku[0]}.png")
            ceiling = store_ceiling(open_store("s3://bench/ceiling", settings), body, 3000, args.workers)
            print(
                f"pipeline: {first.published:,} images in {first.seconds:.1f} s = "
                f"{first.images_per_s:,.0f} img/s end to end ({first.images_per_s / base:.1f}x naive); "
                f"the S3 server alone takes {ceiling:,.0f} puts/s of ready bytes "
                f"(pipeline at {first.images_per_s / ceiling:.0%} of it)"
            )
            local = publish(tmp / "snap1", pipeline, open_store(str(tmp / "local")), config)
            print(f"pipeline to a local folder: {local.images_per_s:,.0f} img/s end to end")

            catalog = pd.read_parquet(demo.catalog_parquet)
            changed = np.random.default_rng(0).choice(
                len(catalog), int(len(catalog) * args.changed), replace=False
            )
            catalog.loc[changed, "title"] = catalog.loc[changed, "title"] + " (new season)"
            catalog.to_parquet(demo.directory / "changed.parquet")
            ingest(demo.directory / "changed.parquet", tmp / "snap2")
            encode_snapshot(tmp / "snap2", Path("build/embedding-cache"), EncodeConfig(), encoder=encoder)
            second = publish(tmp / "snap2", pipeline, store, config)
            print(
                f"after changing {len(changed):,} titles: published {second.published:,}, "
                f"unchanged {second.unchanged:,}, in {second.seconds:.1f} s"
            )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
