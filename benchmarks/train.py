"""Benchmark: training img/s of productgen's loop against the tutorial way, same networks, same run.

Baseline: a plain PyTorch loop over the same generator/discriminator and loss, fed by a
torch DataLoader whose Dataset opens and decodes each PNG file per sample (ToTensor-style), with
`--workers` worker processes. productgen: `train()` with photos decoded once into a uint8 tensor
that sits on the device. Both time only steps (not start-up). Also prints seconds per 60k-image
epoch.

    python benchmarks/train.py --preset cpu-demo --steps 60
    python benchmarks/train.py --preset gpu --steps 300 --synthetic   # a machine without MiniLM

--synthetic writes random unit vectors as embeddings (throughput does not depend on their values)
so the benchmark runs where the text model is not installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from productgen.catalog.demo import build_demo_catalog
from productgen.catalog.fashion_mnist import FashionMNISTSource, load_fashion_mnist
from productgen.catalog.ingest import ingest
from productgen.conditioning import ConditionConfig, snapshot_conditions
from productgen.devices import pick_device, uses_bf16
from productgen.losses import Batch
from productgen.snapshot import Snapshot
from productgen.train import _build, train, train_config


def _snapshot(root: Path, rows: int, synthetic: bool) -> Path:
    directory = os.environ.get("PRODUCTGEN_FASHION_MNIST_DIR")
    data = load_fashion_mnist(FashionMNISTSource(directory=Path(directory) if directory else None))
    demo = build_demo_catalog(data, root / "demo", limit=rows)
    ingest(demo.catalog_parquet, root / "snap")
    snap = root / "snap"
    if synthetic:
        layout = Snapshot(snap)
        n = layout.num_rows()
        rng = np.random.default_rng(0)
        keys = pq.read_table(layout.valid_path, columns=["sku", "content_hash"])
        columns = {"sku": keys.column("sku"), "content_hash": keys.column("content_hash")}
        for name in ("embedding", "color_embedding", "category_embedding"):
            v = rng.standard_normal((n, 384)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), 384)
        pq.write_table(pa.table(columns), layout.embeddings_path)
        layout.write_encoding({"model": "synthetic", "dim": 384})
    else:
        from productgen.text import EncodeConfig, encode_snapshot

        encode_snapshot(snap, root / "cache", EncodeConfig())
    return snap


class PngDataset(Dataset):
    """The tutorial Dataset: open and decode one PNG per item."""

    def __init__(self, paths: list[str], conditions: np.ndarray) -> None:
        self.paths, self.conditions = paths, conditions

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        with Image.open(self.paths[i]) as im:
            x = torch.from_numpy(np.asarray(im.convert("RGB"), np.float32) / 127.5 - 1).permute(2, 0, 1)
        return x, torch.from_numpy(self.conditions[i])


def baseline_images_per_s(snap: Path, config, steps: int, workers: int) -> float:
    device = pick_device(config.device)
    layout = Snapshot(snap)
    conditions, rows, _ = snapshot_conditions(layout, ConditionConfig.for_snapshot(layout))
    root = layout.image_root()
    train_rows = (rows["split"] == "train").to_numpy()
    paths = [str(root / p) for p in rows["image"][train_rows]]
    loader = DataLoader(
        PngDataset(paths, conditions[train_rows]), batch_size=config.batch_size, shuffle=True,
        num_workers=workers, drop_last=True, persistent_workers=workers > 0, pin_memory=device.type == "cuda",
    )  # fmt: skip

    # _build only reads the condition width when there are no aux heads
    sizing = types.SimpleNamespace(conditions=torch.from_numpy(conditions), labels={}, vocabulary=None)
    _, _, _, loss = _build(config, sizing, device, uses_bf16(config.amp, device))
    done, started = 0, None
    while done < steps:
        for x, c in loader:
            loss.step(Batch(x.to(device, non_blocking=True), c.to(device, non_blocking=True), {}))
            if device.type == "cuda":
                torch.cuda.synchronize()
            done += 1
            if done == 3:  # warm-up excluded
                started = time.perf_counter()
            if done >= steps:
                break
    return (steps - 3) * config.batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="cpu-demo")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rows", type=int, default=70_000)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--set", action="append", default=[], help="override, e.g. compile=true")
    args = parser.parse_args()
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        snap = _snapshot(Path(tmp), args.rows, args.synthetic)
        quiet = {"sample_every": 10**9, "checkpoint_every": 10**9, "aux_heads": False}
        config = train_config(args.preset, **quiet, **overrides)
        config = dataclasses.replace(config, max_steps=args.steps, max_minutes=None)
        device = pick_device(config.device)
        ours = train(snap, Path(tmp) / "run", config).images_per_s
        base = baseline_images_per_s(snap, config, args.steps, args.workers)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU x{os.cpu_count()}"
    print(f"{args.preset} on {name}, batch {config.batch_size}, {args.steps} steps")
    print(
        f"productgen loop (uint8 tensor on device): {ours:,.0f} img/s, {60_000 / ours:,.1f} s per 60k epoch"
    )
    print(
        f"baseline (DataLoader decoding PNGs, {args.workers} workers): {base:,.0f} img/s, "
        f"{60_000 / base:,.1f} s per 60k epoch"
    )
    print(f"speed-up: {ours / base:.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
