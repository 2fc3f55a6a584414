"""Benchmark: render 10,000 SKUs to a local folder on a 2-worker Dask LocalCluster vs one process.

Every variant publishes the same snapshot with the same model to a fresh folder (file://) and
checks that the objects are byte-identical to the single process's:

    single      publish() in this process: today's path (the baseline)
    shards      the same 8 shards one after another in this process, then finish_publish: the
                cost of sharding itself (each shard plans, reads the manifests, writes its parts)
    dask:1      the render flow's shard tasks on a LocalCluster of 1 one-thread worker: a worker's rate
    dask:2      the same on 2 workers: the scale-out (on this 2-core machine parity is the ceiling)

    python benchmarks/render_dask.py --model RUN_DIR [--rows 10000] [--shards 8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from distributed import Client, LocalCluster

from productgen.catalog import build_demo_catalog, load_fashion_mnist
from productgen.catalog.fashion_mnist import FashionMNISTSource
from productgen.catalog.ingest import ingest
from productgen.manifest import new_run_id
from productgen.publish import PublishConfig, PublishSummary, finish_publish, publish
from productgen.render import RenderPipeline
from productgen.shards import Shard
from productgen.storage import open_store
from productgen.text import EncodeConfig, encode_snapshot


def _shard_task(snapshot: str, run_dir: str, dest: str, run_id: str, index: int, count: int) -> dict:
    """What flows.tasks.publish_shard does, without Prefect: the model from its folder, one shard."""
    pipeline = RenderPipeline.from_run(Path(run_dir))
    summary = publish(Path(snapshot), pipeline, open_store(dest), shard=Shard(index, count), run_id=run_id)
    return summary.to_json()


def _objects(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in folder.rglob("*.png")
        if "manifests" not in p.parts and "models" not in p.parts
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a trained run folder")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        root = Path(tmp)
        data = load_fashion_mnist(FashionMNISTSource.from_env(os.environ))
        demo = build_demo_catalog(data, root / "demo", limit=args.rows)
        snapshot = root / "snap"
        ingest(demo.catalog_parquet, snapshot)
        encode_snapshot(snapshot, root / "cache", EncodeConfig())
        pipeline = RenderPipeline.from_run(args.model)
        shards = Shard.all(args.shards)
        seconds: dict[str, float] = {}

        started = time.perf_counter()
        publish(snapshot, pipeline, open_store(str(root / "single")))
        seconds["single"] = time.perf_counter() - started
        reference = _objects(root / "single")

        started, store, run_id = time.perf_counter(), open_store(str(root / "shards")), new_run_id()
        parts = [publish(snapshot, pipeline, store, PublishConfig(), shard=s, run_id=run_id) for s in shards]
        finish_publish(store, parts, 0.0)
        seconds["shards"] = time.perf_counter() - started
        assert _objects(root / "shards") == reference

        for workers in (1, 2):
            name, dest = f"dask:{workers}", str(root / f"dask{workers}")
            with (
                LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0") as cluster,
                Client(cluster) as client,
            ):
                client.run(lambda: __import__("productgen.publish"))  # imports before the clock
                started, run_id = time.perf_counter(), new_run_id()
                futures = [
                    client.submit(_shard_task, str(snapshot), str(args.model), dest, run_id, s.index, s.count)
                    for s in shards
                ]
                summaries = [PublishSummary.from_json(f) for f in client.gather(futures)]
                finish_publish(open_store(dest), summaries, 0.0)
                seconds[name] = time.perf_counter() - started
            assert _objects(root / f"dask{workers}") == reference, f"{name}: other bytes"

        n = len(reference)
        print(f"{n:,} SKUs to a local folder, {args.shards} shards, every variant byte-identical:")
        for name, s in seconds.items():
            print(f"  {name:<8} {s:6.1f} s  {n / s:7,.0f} img/s")
        print(f"sharding overhead (shards / single): {seconds['shards'] / seconds['single'] - 1:+.1%}")
        print(f"one Dask worker (one thread): {n / seconds['dask:1']:,.0f} img/s")
        print(f"2 Dask workers vs one process: {seconds['single'] / seconds['dask:2']:.2f}x")


if __name__ == "__main__":
    main()
