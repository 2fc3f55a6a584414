"""Benchmark: the per-worker rates a scale plan is built from (docs/scale.md), on this machine.

encode    descriptions through the text model, sentences/s (CPU: batch 64; GPU: 64 and 512)
generate  the generator alone, img/s (CPU: the render path, one thread and 64 rows per call;
          GPU: batches of 1,024)
png       PNG encoding of 32 px renders, img/s on one core and on every core (processes)

python benchmarks/scale_rates.py --run RUN_DIR [--text-model DIR|ID] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from productgen.render import RenderConfig, RenderPipeline, encode_image
from productgen.text import DEFAULT_MODEL, EncodeConfig, TextEncoder

CATEGORIES = [
    "t-shirt",
    "trousers",
    "pullover",
    "dress",
    "coat",
    "sandals",
    "shirt",
    "sneakers",
    "bag",
    "boots",
]
COLOURS = ["red", "navy", "olive", "burgundy", "black", "white", "mustard", "teal", "pink", "grey"]
BRANDS = ["Northwind", "Corvid", "Atlas & Co", "Lumen", "Brightline"]


def descriptions(n: int, seed: int = 0) -> list[str]:
    """Catalog-like descriptions, all distinct (nothing comes from a cache)."""
    rng = np.random.default_rng(seed)
    return [
        f"{rng.choice(['Women', 'Men', 'Kids'])}'s {rng.choice(COLOURS)} {rng.choice(CATEGORIES)} no. {i}"
        f" | brand: {rng.choice(BRANDS)} | size: {rng.choice(['S', 'M', 'L', 'XL'])}"
        for i in range(n)
    ]


def _rate(fn, n: int, repeat: int = 2) -> float:
    fn()  # warm-up
    best = 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = max(best, n / (time.perf_counter() - started))
    return best


def _encode_chunk(images: np.ndarray) -> int:
    config = RenderConfig()
    return sum(len(encode_image(image, config)) > 0 for image in images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--text-model", default=DEFAULT_MODEL)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--texts", type=int, default=4096)
    parser.add_argument("--images", type=int, default=8192)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"device {args.device}, {cores} CPU cores, torch threads {torch.get_num_threads()}")

    texts = descriptions(args.texts)
    for batch in (64, 512) if args.device == "cuda" else (64,):
        encoder = TextEncoder(EncodeConfig(model=args.text_model, batch_size=batch, device=args.device))
        rate = _rate(lambda e=encoder: e.encode(texts), len(texts))
        print(f"encode  batch {batch:>5}: {rate:9,.0f} sentences/s")

    pipeline = RenderPipeline.from_run(args.run, args.device, batch_size=1024)
    conditions = np.random.default_rng(0).standard_normal((args.images, pipeline.conditioner.config.dim))
    conditions = conditions.astype(np.float32)
    seeds = list(range(args.images))
    rows = "1,024 rows per call" if args.device == "cuda" else "64 rows per call, one thread"
    rate = _rate(lambda: pipeline(conditions=conditions, seeds=seeds), args.images)
    print(f"generate {pipeline.version} ({rows}): {rate:9,.0f} img/s")

    images = pipeline(conditions=conditions[:2048], seeds=seeds[:2048]).images
    print(f"png     one core:   {_rate(lambda: _encode_chunk(images), len(images)):9,.0f} img/s")
    chunks = np.array_split(images, cores)
    with ProcessPoolExecutor(cores) as pool:
        rate = _rate(lambda: sum(pool.map(_encode_chunk, chunks)), len(images))
    print(f"png     {cores} cores: {rate:9,.0f} img/s")


if __name__ == "__main__":
    main()
