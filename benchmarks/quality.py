"""Benchmark: every model family trained for the same minutes on one snapshot, then one table.

    python benchmarks/quality.py SNAPSHOT --train cvae vaegan stylegan dcgan cgan cgan:wgan-gp \\
        --minutes 10 --out build/quality [--parallel 1] [--threads 2] [--preset cpu-demo]
    python benchmarks/quality.py SNAPSHOT --runs build/quality/cvae ...   # evaluate only
    python benchmarks/quality.py SNAPSHOT --train ... --no-evaluate     # train only (GPU machine)

A family may name its adversarial loss after a colon (`cgan:wgan-gp`). Each training is its own
process with `--threads` torch threads (pinned to as many cores with --parallel > 1), so several
can run side by side on a machine with cores to spare; on a 2-core laptop use --parallel 1.
Each run is then evaluated exactly as `productgen evaluate` does (eval.json, eval.md and the
contact sheet land in the run folder). Targets (issue 13): cpu-demo, 10 min, 2 cores: category
ratio >= 0.95, colour >= 99%, FID <= 2x the floor, precision and recall >= 0.85, CAS category
>= 85% (the table also shows CAS's ratio to the same classifier trained on real photos); gpu,
30 min on an H100: category ratio >= 1.00, FID <= 1.25x floor, recall >= 0.90.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from productgen.evaluate import EvalConfig, evaluate_run
from productgen.report import write_report

HEADER = (
    "| run | family / loss | steps | img/s | category (ratio) | colour | paraphrase cat / colour "
    "| FID (floor) | precision / recall (floors) | CAS cat / colour (cat ratio to real) |"
)


def _train_command(snapshot: Path, spec: str, out: Path, args: argparse.Namespace) -> list[str]:
    family, _, loss = spec.partition(":")
    code = (
        "import dataclasses, json, sys, torch\n"
        "from pathlib import Path\n"
        "from productgen.train import train, train_config\n"
        f"torch.set_num_threads({args.threads})\n"
        f"config = train_config({args.preset!r}, family={family!r}, loss={loss or None!r}, "
        f"max_minutes={args.minutes}, device={args.device!r})\n"
        f"result = train(Path({str(snapshot)!r}), Path({str(out)!r}), config)\n"
        "print(json.dumps({'step': result.step, 'images_per_s': round(result.images_per_s, 1)}))\n"
    )
    return [sys.executable, "-c", code]


def _cores(spec: str) -> list[int]:
    """'0-11' or '0,2,4' -> core numbers."""
    cores = []
    for part in spec.split(","):
        low, _, high = part.partition("-")
        cores += range(int(low), int(high or low) + 1)
    return cores


def train_all(snapshot: Path, args: argparse.Namespace) -> list[Path]:
    """Train every --train spec, --parallel at a time; returns their run folders."""
    runs, pending, running = [], list(args.train), []
    cores = _cores(args.cores) if args.cores else list(range(os.cpu_count() or 1))
    free = [cores[i : i + args.threads] for i in range(0, len(cores) - args.threads + 1, args.threads)]
    while pending or running:
        while pending and len(running) < args.parallel:
            spec = pending.pop(0)
            out = args.out / spec.replace(":", "-")
            runs.append(out)
            command = _train_command(snapshot, spec, out, args)
            slot = free.pop(0) if args.parallel > 1 and free else None
            if slot is not None and sys.platform == "linux":
                command = ["taskset", "-c", ",".join(map(str, slot)), *command]
            log = (args.out / f"{out.name}.log").open("w")
            running.append((spec, slot, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)))
            print(f"training {spec} -> {out}" + (f" on cores {slot}" if slot else ""), flush=True)
        time.sleep(2)
        for item in list(running):
            spec, slot, process = item
            if process.poll() is not None:
                running.remove(item)
                if slot is not None:
                    free.append(slot)
                print(f"{spec}: exit {process.returncode}", flush=True)
    return runs


def table_row(run: Path, m: dict) -> str:
    h, p, c = m["holdout"], m["paraphrase"], m["cas"]["accuracy"]
    cas_ratio = m["cas"].get("ratio", {}).get("category")
    acc, para = h["accuracy"], p["accuracy"]
    info = json.loads((run / "run.json").read_text())
    loss = info["train_config"]["weights"]["adversarial"] if m["family"] not in {"cvae"} else "-"
    return (
        f"| {run.name} | {m['family']} / {loss} | {info['step']:,} | {info['images_per_s']:,.0f} "
        f"| {acc['category']:.1%} ({h['ratio']['category']:.2f}) | {acc['color']:.1%} "
        f"| {para['category']:.1%} / {para['color']:.1%} "
        f"| {h['fid']:.2f} ({h['fid_floor']:.2f}) "
        f"| {h['precision']:.2f} / {h['recall']:.2f} ({h['precision_floor']:.2f} / {h['recall_floor']:.2f}) "
        f"| {c['category']:.1%} / {c['color']:.1%}"
        + ("" if cas_ratio is None else f" ({cas_ratio:.2f})")
        + " |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("snapshot", type=Path)
    parser.add_argument("--train", nargs="*", default=[], help="families to train (family[:loss])")
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="trained runs to evaluate")
    parser.add_argument("--out", type=Path, default=Path("build/quality"))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--preset", default="cpu-demo")
    parser.add_argument("--device", default=None)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cores", help="cores the trainings may use, e.g. 0-11 (default: all)")
    parser.add_argument("--no-evaluate", action="store_true")
    parser.add_argument("--judge-epochs", type=int, default=EvalConfig.judge_epochs)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = [*args.runs, *(train_all(args.snapshot, args) if args.train else [])]
    if args.no_evaluate:
        return
    rows = []
    for run in runs:
        if not (run / "run.json").exists():
            print(f"{run}: no trained model; left out of the table")
            continue
        evaluation = evaluate_run(run, args.snapshot, EvalConfig(judge_epochs=args.judge_epochs))
        write_report(evaluation, run)
        m = evaluation.metrics
        rows.append(table_row(run, m))
        print(f"{run}: evaluated in {m['seconds']:.0f} s; judge on real photos {m['judge']['real_accuracy']}")
    print(HEADER)
    print("|---" * 10 + "|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
