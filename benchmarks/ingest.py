"""Benchmark: ingest a 1,000,000-row CSV; targets under 30 s and under 1 GB peak RSS (2 cores).

The catalog is the demo catalog's rows repeated with fresh skus, plus 0.1% bad rows and 1%
duplicates. Each run happens in a child process so its peak RSS is its own. Baseline in the same
run: pandas.read_csv of the whole file as text (no validation at all), the usual first attempt.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from productgen.catalog import build_demo_catalog, load_fashion_mnist
from productgen.catalog.fashion_mnist import FashionMNISTSource


def write_big_csv(path: Path, rows: int, seed: int = 0) -> None:
    """rows of realistic catalog lines: demo titles/brands/colours, some bad, some duplicated."""
    with tempfile.TemporaryDirectory() as tmp:
        demo = pd.read_parquet(
            build_demo_catalog(
                load_fashion_mnist(FashionMNISTSource.from_env(os.environ)), Path(tmp), limit=5000
            ).catalog_parquet
        )
    rng = np.random.default_rng(seed)
    pick = demo.iloc[rng.integers(len(demo), size=rows)].reset_index(drop=True)
    pick["sku"] = [f"BENCH-{i:08d}" for i in range(rows)]
    dup = rng.random(rows) < 0.01
    pick.loc[dup, "sku"] = [f"BENCH-{i:08d}" for i in rng.integers(rows, size=int(dup.sum()))]
    bad = rng.random(rows) < 0.001
    pick.loc[bad, "sku"] = "bad sku"
    pick["updated_at"] = pick["updated_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    pick.drop(columns=["split"]).to_csv(path, index=False)


def _child_run(code: str) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of `code` run in a fresh Python, which reports its own peak."""
    report = "; import resource; print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code + report], check=True, capture_output=True, text=True
    ).stdout
    seconds = time.perf_counter() - started
    lines = out.strip().splitlines()
    print("\n".join(line for line in lines if not line.startswith("PEAK")))
    return seconds, int(lines[-1].split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        csv_path = Path(tmp) / "catalog.csv"
        write_big_csv(csv_path, args.rows)
        size_mb = csv_path.stat().st_size / 1e6
        base_s, base_mb = _child_run(
            f"import pandas as pd; df = pd.read_csv({str(csv_path)!r}, dtype=str); df.drop_duplicates('sku')"
        )
        code = (
            "from pathlib import Path; from productgen.catalog.ingest import ingest; "
            f"s = ingest(Path({str(csv_path)!r}), Path({tmp!r}) / 'snap'); "
            "print(f'  valid {s.valid:,}, rejected {s.rejected:,} (duplicates {s.duplicates:,})')"
        )
        seconds, peak_mb = _child_run(code)
        print(
            f"ingest {args.rows:,} rows ({size_mb:.0f} MB CSV): {seconds:.1f} s, "
            f"{args.rows / seconds:,.0f} rows/s, peak RSS {peak_mb:,.0f} MB "
            f"(targets < 30 s: {'met' if seconds < 30 else 'MISSED'}, "
            f"< 1 GB: {'met' if peak_mb < 1024 else 'MISSED'})"
        )
        print(f"baseline pandas.read_csv, no validation: {base_s:.1f} s, peak RSS {base_mb:,.0f} MB")
        print(f"ingest time / baseline time: {seconds / base_s:.2f}x")


if __name__ == "__main__":
    main()
