"""Benchmark: encode demo catalog descriptions cold, then again after changing 1% of the rows.

Prints sentences/s through the model when the cache is empty, and how many texts (and how long)
the second run needs: only the changed rows should reach the model. Baseline in the same run:
encoding every description again without the cache.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from productgen.catalog import build_demo_catalog, load_fashion_mnist
from productgen.catalog.fashion_mnist import FashionMNISTSource
from productgen.catalog.ingest import ingest
from productgen.catalog.schema import DESCRIPTION_FIELDS
from productgen.snapshot import Snapshot
from productgen.text import EncodeConfig, TextEncoder, describe, encode_snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--changed", type=float, default=0.01)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-encode-") as tmp_name:
        tmp = Path(tmp_name)
        demo = build_demo_catalog(
            load_fashion_mnist(FashionMNISTSource.from_env(os.environ)), tmp / "demo", limit=args.rows
        )
        ingest(demo.catalog_csv, tmp / "snap1")
        encoder = TextEncoder(EncodeConfig())
        cold = encode_snapshot(tmp / "snap1", tmp / "cache", EncodeConfig(), encoder=encoder)
        print(
            f"cold: {cold.rows:,} rows, {cold.encoded:,} texts through the model "
            f"in {cold.encode_seconds:.1f} s = {cold.sentences_per_s:,.0f} sentences/s "
            f"({cold.seconds:.1f} s in all)"
        )
        exact = Snapshot(tmp / "snap1").read_embeddings()
        fast = encode_snapshot(tmp / "snap1", tmp / "cache-bf16", EncodeConfig(amp="auto"))
        if fast.bf16:
            cosine = (exact * Snapshot(tmp / "snap1").read_embeddings()).sum(1)
            print(
                f"the same, the model in bf16 (--amp auto): {fast.sentences_per_s:,.0f} sentences/s, "
                f"{fast.sentences_per_s / cold.sentences_per_s:.2f}x; embeddings within cosine "
                f"{cosine.min():.5f} of float32's"
            )
        else:
            print("the same, the model in bf16: not measured (this CPU does not compute bf16 natively)")

        catalog = pd.read_csv(demo.catalog_csv, dtype=str, keep_default_na=False)
        changed = np.random.default_rng(0).choice(
            len(catalog), int(len(catalog) * args.changed), replace=False
        )
        catalog.loc[changed, "title"] = catalog.loc[changed, "title"] + " (new season)"
        catalog.to_csv(tmp / "changed.csv", index=False)
        ingest(tmp / "changed.csv", tmp / "snap2")
        warm = encode_snapshot(tmp / "snap2", tmp / "cache", EncodeConfig(), encoder=encoder)
        print(
            f"after changing {len(changed):,} rows ({args.changed:.0%}): {warm.encoded:,} texts encoded, "
            f"{warm.cached:,} from the cache, {warm.seconds:.2f} s in all"
        )

        started = time.perf_counter()
        fields = Snapshot(tmp / "snap2").read_rows(list(DESCRIPTION_FIELDS))
        encoder.encode([describe(*row) for row in fields.itertuples(index=False)])
        base = time.perf_counter() - started
        print(
            f"baseline, re-encode everything without the cache: {base:.1f} s; "
            f"incremental run is {base / warm.seconds:.0f}x faster"
        )


if __name__ == "__main__":
    main()
