"""Benchmark: build the full 70,000-SKU demo catalog; target under 60 s on 2 cores.

Baseline in the same run: the same build on one worker process, so the ratio shows what the
parallel encode buys on this machine. Prints one line per measurement and a summary ratio.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from productgen.catalog import build_demo_catalog, load_fashion_mnist
from productgen.catalog.fashion_mnist import FashionMNISTSource


def _timed_build(workers: int, size: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        started = time.perf_counter()
        data = load_fashion_mnist(FashionMNISTSource.from_env(os.environ))
        built = build_demo_catalog(data, Path(tmp), size=size, workers=workers)
        return time.perf_counter() - started, built.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    seconds, rows = _timed_build(cores, args.size)
    print(
        f"demo catalog, {rows} SKUs, {args.size} px, {cores} workers: {seconds:.1f} s "
        f"({rows / seconds:,.0f} SKU/s; target < 60 s: {'met' if seconds < 60 else 'MISSED'})"
    )
    if not args.skip_baseline:
        base, _ = _timed_build(1, args.size)
        print(f"baseline, 1 worker: {base:.1f} s ({rows / base:,.0f} SKU/s)")
        print(f"speed-up over 1 worker: {base / seconds:.2f}x")


if __name__ == "__main__":
    main()
