"""Render images from a trained generator: deterministic noise per (sku, model version, variant).

Rendering is a pipeline of injected parts (generator, conditions, seeds); it knows nothing of S3
or Prefect. The same SKU with the same model version always gives the same pixels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from productgen.conditioning import prompt_conditions
from productgen.runs import TrainedGenerator, load_generator
from productgen.sheets import labelled_grid, save_png, to_uint8
from productgen.text import EncodeConfig, TextEncoder

__all__ = ["generate", "noise_seed", "sample_sheet"]


def noise_seed(sku: str, model_version: str, variant: int = 0) -> int:
    """A 63-bit seed from (sku, model version, variant): stable across runs and machines."""
    digest = hashlib.blake2b(f"{sku}\x1f{model_version}\x1f{variant}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << 63) - 1)


@torch.no_grad()
def generate(trained: TrainedGenerator, conditions: np.ndarray, seeds: Sequence[int]) -> np.ndarray:
    """(N, C) conditions and N seeds -> (N, S, S, 3) uint8; each image depends only on its own row."""
    z_dim = trained.generator.config.z_dim
    z = torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])
    device = next(trained.generator.parameters()).device
    images = trained.generator(z.to(device), torch.from_numpy(conditions).to(device))
    return to_uint8(images)


def sample_sheet(run_dir: Path, texts: Sequence[str], *, n: int = 8, out: Path, seed: int = 0) -> list[dict]:
    """Render each free-text description n times into a labelled sheet; returns what was read."""
    trained = load_generator(run_dir)
    encoder = TextEncoder(EncodeConfig(model=trained.text_model))
    conditions, read = prompt_conditions(texts, encoder, trained.vocabulary, trained.conditioning)
    repeated = np.repeat(conditions, n, axis=0)
    seeds = [noise_seed(f"prompt-{seed}", trained.version, k) for _ in texts for k in range(n)]
    images = generate(trained, repeated, seeds)
    labels = [text if k == 0 else "" for text in texts for k in range(n)]
    save_png(labelled_grid(list(images), labels, n, title=f"{run_dir.name} (model {trained.version})"), out)
    return read
