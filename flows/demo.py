"""`make demo`: the nightly flow end to end on the demo catalog, against the local S3 server.

    1. the demo catalog (Fashion-MNIST's 70,000 product photos) in build/demo, built once
    2. the local S3 server on 127.0.0.1:9000, started in the background unless one is running;
       its buckets are files in build/s3-data, written before each write is acknowledged
    3. the nightly flow: ingest, encode, train (cpu-demo, time-boxed), evaluate + gate, render, publish
    4. where the images, manifest, report and contact sheet are

A second run finds the same catalog, the promoted model trained on it and every image published:
it trains nothing and publishes nothing.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from flows.local import ensure_local_s3
from flows.params import NightlyParams
from flows.pipeline import nightly
from productgen.catalog import build_demo_catalog, load_fashion_mnist
from productgen.catalog.fashion_mnist import FashionMNISTSource
from productgen.devices import AMP_WORDS
from productgen.runs import RunFolder
from productgen.snapshot import Snapshot
from productgen.storage import S3Settings, open_store


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--minutes", type=float, default=10.0, help="training time budget")
    parser.add_argument("--judge-epochs", type=int, default=3, help="epochs of the evaluation judge")
    parser.add_argument("--evaluation", default="quick", help="quick (2,000 holdout rows) or full")
    parser.add_argument(
        "--encode-amp", default="auto", choices=list(AMP_WORDS),
        help="bf16 for the text model (auto: where the hardware computes it; 1.66x faster on a CPU with it)",
    )  # fmt: skip
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--dest", default="s3://productgen-demo/catalog")
    args = parser.parse_args()
    args.build.mkdir(parents=True, exist_ok=True)

    catalog = args.build / "demo" / "catalog.parquet"
    if not catalog.is_file():
        build_demo_catalog(load_fashion_mnist(FashionMNISTSource.from_env(os.environ)), args.build / "demo")
    env = ensure_local_s3(args.port, args.build)
    os.environ.update(env)
    url = env["AWS_ENDPOINT_URL"]

    params = NightlyParams(
        catalog=str(catalog),
        dest=args.dest,
        workdir=str(args.build / "pipeline"),
        max_minutes=args.minutes,
        judge_epochs=args.judge_epochs,
        evaluation=args.evaluation,
        encode_amp=args.encode_amp,
    )
    result = nightly(params)

    store = open_store(args.dest, S3Settings(endpoint_url=url))
    published = result["published"]
    print()
    if published is None:
        print(f"the gate refused the new model; nothing was published ({result['promotion']['reasons']})")
        return
    version = published["model_version"]
    run = RunFolder(Path(result["model"]["run"]))
    print(f"demo catalog:   {catalog} ({args.build / 'demo' / 'images'}/)")
    snapshot = Snapshot(Path(result["snapshot"]))
    print(f"snapshot:       {snapshot.root}/ (rejected rows with reasons: {snapshot.rejects_csv.name})")
    print(f"model:          {version}, trained in {run.root}")
    print(f"images:         {args.dest}/{version}/<sku>.png on {url} "
          f"({published['published']:,} published now, {published['unchanged']:,} unchanged)")  # fmt: skip
    print(f"manifest:       {published['manifest']} (and {args.dest}/manifests/latest)")
    print(f"report:         {run.eval_md} ({args.dest}/models/{version}/{run.eval_md.name})")
    print(f"contact sheet:  {run.contact_sheet}")
    sample = next(o.key for o in store.list(f"{version}/"))
    print(f"one image:      {store.url(sample)}")
    print("browse:         export " + " ".join(f"{k}={v}" for k, v in env.items()))
    print(
        f"                aws s3 ls {args.dest}/ --recursive | head   # or: make serve, then http://127.0.0.1:4200"
    )


if __name__ == "__main__":
    main()
