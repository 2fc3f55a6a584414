"""Measure text control of trained runs: the judge's accuracy on renders of holdout descriptions.

    python benchmarks/control.py SNAPSHOT RUN [RUN ...]

The judge (productgen.evaluate) is trained once per snapshot on the real train photos and cached.
For each run, every holdout description is rendered once (noise seeded by sku) and judged; the
ratio compares that with the judge's accuracy on the real holdout photos.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from productgen.evaluate import control_accuracy, load_or_train_judge
from productgen.runs import load_generator, read_run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("snapshot", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--limit", type=int, default=None, help="judge only the first N holdout rows")
    args = parser.parse_args()
    started = time.perf_counter()
    judge, _ = load_or_train_judge(args.snapshot, 32)
    real = ", ".join(f"{k} {v:.1%}" for k, v in judge.real_accuracy.items())
    print(
        f"judge on real holdout: {real} ({time.perf_counter() - started:.0f} s, judge trained if not cached)"
    )
    for run in args.runs:
        meta = read_run(run)
        result = control_accuracy(judge, load_generator(run), args.snapshot, limit=args.limit)
        config = meta["train_config"]
        accuracy = ", ".join(
            f"{k} {v:.1%} (ratio {result['ratio'][k]:.2f})" for k, v in result["accuracy"].items()
        )
        print(
            f"{run}: {config['family']}, {meta['step']} steps, {'+'.join(meta['conditioning'])}: {accuracy}"
        )


if __name__ == "__main__":
    main()
