"""Benchmark: the quality numbers of trained runs on one snapshot, one table row per run.

    python benchmarks/quality.py build/snapshot build/run [more runs...]

Each run is evaluated exactly as `productgen evaluate` does (and its eval.json/eval.md/contact
sheet are written into it); the table is what README's results table shows. Targets (issue 5):
cpu-demo 10 min: category ratio >= 0.90, colour >= 95%, paraphrase control >= 80%.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from productgen.evaluate import EvalConfig, evaluate_run
from productgen.report import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("snapshot", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--judge-epochs", type=int, default=EvalConfig.judge_epochs)
    args = parser.parse_args()
    header = (
        "| run | family | conditioning | category (ratio) | colour | paraphrase cat / colour (hex) "
        "| FID (floor) | precision / recall | CAS cat / colour |"
    )
    rows = []
    for run in args.runs:
        m = evaluate_run(run, args.snapshot, EvalConfig(judge_epochs=args.judge_epochs))
        write_report(m, run)
        m = m.metrics
        h, p, c = m["holdout"], m["paraphrase"], m["cas"]["accuracy"]
        acc, para = h["accuracy"], p["accuracy"]
        rows.append(
            f"| {run.name} | {m['family']} | {'+'.join(m['conditioning'])} "
            f"| {acc['category']:.1%} ({h['ratio']['category']:.2f}) | {acc['color']:.1%} "
            f"| {para['category']:.1%} / {para['color']:.1%} ({p['hex_color_accuracy']:.1%}) "
            f"| {h['fid']:.2f} ({h['fid_floor']:.2f}) | {h['precision']:.2f} / {h['recall']:.2f} "
            f"| {c['category']:.1%} / {c['color']:.1%} |"
        )
        print(f"{run}: evaluated in {m['seconds']:.0f} s; judge on real photos {m['judge']['real_accuracy']}")
    print(header)
    print("|---" * 9 + "|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
