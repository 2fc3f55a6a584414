"""Move an encoded demo snapshot to a machine that cannot reach the text model (the GPU machine).

    python benchmarks/device_snapshot.py pack SNAPSHOT OUT_DIR      # here: ~20 MB
    python benchmarks/device_snapshot.py unpack OUT_DIR SNAPSHOT    # there: a snapshot to train on

The photos are not carried: `unpack` rebuilds the demo catalog from Fashion-MNIST (the dataset's
IDX files, $PRODUCTGEN_FASHION_MNIST_DIR) and ingests it, which gives the same rows and content
hashes as `make demo` (checked). The embeddings travel as int8, one scale per distinct
description (49k distinct texts among 70k rows), and are restored to float32, unit length: the
cosine to the original is above 0.9999. The runs trained there come back to be evaluated here
(benchmarks/quality.py --runs), where the text model is. Used for benchmarks/quality.py only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from productgen.catalog import build_demo_catalog, load_fashion_mnist
from productgen.catalog.fashion_mnist import FashionMNISTSource
from productgen.catalog.ingest import ingest
from productgen.snapshot import Snapshot, to_matrix

_COLUMNS = ("embedding", "color_embedding", "category_embedding")


def pack(snapshot: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    table = pq.read_table(Snapshot(snapshot).embeddings_path)
    arrays: dict[str, np.ndarray] = {
        "sku": np.array(table["sku"].to_pylist()),
        "content_hash": np.array(table["content_hash"].to_pylist()),
    }
    for column in _COLUMNS:
        matrix = to_matrix(table[column])
        distinct, index = np.unique(matrix, axis=0, return_inverse=True)
        scale = np.abs(distinct).max(axis=1, keepdims=True) / 127.0
        arrays[f"{column}.q"] = np.round(distinct / np.maximum(scale, 1e-12)).astype(np.int8)
        arrays[f"{column}.scale"] = scale.astype(np.float32)
        arrays[f"{column}.index"] = index.astype(np.int32).ravel()
    np.savez_compressed(out / "embeddings.npz", **arrays)
    for name in ("reads.parquet", "encode.json"):
        shutil.copy(snapshot / name, out / name)
    print(f"packed {len(table):,} rows into {sum(p.stat().st_size for p in out.iterdir()) / 1e6:.1f} MB")


def unpack(packed: Path, snapshot: Path, build: Path) -> None:
    data = load_fashion_mnist(FashionMNISTSource.from_env(os.environ))
    demo = build_demo_catalog(data, build / "demo")
    ingest(demo.catalog_parquet, snapshot)
    arrays = np.load(packed / "embeddings.npz", allow_pickle=False)
    rows = pq.read_table(Snapshot(snapshot).valid_path, columns=["sku", "content_hash"])
    if rows["sku"].to_pylist() != arrays["sku"].tolist() or (
        rows["content_hash"].to_pylist() != arrays["content_hash"].tolist()
    ):
        raise SystemExit("the rebuilt demo catalog differs from the packed snapshot's rows")
    columns = {"sku": rows["sku"], "content_hash": rows["content_hash"]}
    for column in _COLUMNS:
        vectors = arrays[f"{column}.q"].astype(np.float32) * arrays[f"{column}.scale"]
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        full = vectors[arrays[f"{column}.index"]]
        columns[column] = pa.FixedSizeListArray.from_arrays(pa.array(full.ravel()), full.shape[1])
    pq.write_table(pa.table(columns), Snapshot(snapshot).embeddings_path)
    shutil.copy(packed / "reads.parquet", snapshot / "reads.parquet")
    encoding = json.loads((packed / "encode.json").read_text())
    (snapshot / "encode.json").write_text(json.dumps({**encoding, "snapshot": str(snapshot)}, indent=2))
    print(f"unpacked {len(rows):,} rows into {snapshot}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["pack", "unpack"])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument(
        "--build", type=Path, default=Path("build/device"), help="unpack: the demo catalog's folder"
    )
    args = parser.parse_args()
    if args.action == "pack":
        pack(args.source, args.target)
    else:
        unpack(args.source, args.target, args.build)


if __name__ == "__main__":
    main()
