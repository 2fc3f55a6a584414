"""Render images from a trained generator: deterministic noise per (sku, model version, variant).

    conditions (N, C) + seeds (N,) -> generate -> (N, S, S, 3) uint8 -> encode_image -> PNG/WebP bytes

Rendering is a pipeline of injected parts (generator, conditions, seeds); it knows nothing of S3
or Prefect. The same SKU with the same model version always gives the same bytes: the noise comes
from the seed alone and the generator runs in eval mode (BatchNorm uses its stored statistics), so
an image does not depend on which other rows share its batch (tests/test_publish.py checks this).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from productgen.conditioning import prompt_conditions
from productgen.runs import TrainedGenerator, load_generator
from productgen.sheets import labelled_grid, save_png, to_uint8
from productgen.text import EncodeConfig, TextEncoder

__all__ = ["FORMATS", "RenderConfig", "encode_image", "generate", "noise_seed", "sample_sheet"]

FORMATS = {"png": "image/png", "webp": "image/webp"}


@dataclass(frozen=True)
class RenderConfig:
    """How images are rendered and encoded."""

    variants: int = 1  # images per SKU, each from its own seed
    image_format: str = "png"
    size: int | None = None  # output pixels (square); None: the model's own size
    batch_size: int = 256  # rows per generator call

    def __post_init__(self) -> None:
        if self.image_format not in FORMATS:
            raise ValueError(f"format {self.image_format!r} is not supported; use {' or '.join(FORMATS)}")
        if self.variants < 1:
            raise ValueError(f"variants must be at least 1; got {self.variants}")
        if self.size is not None and not 8 <= self.size <= 4096:
            raise ValueError(f"size must be between 8 and 4096 pixels; got {self.size}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1; got {self.batch_size}")

    @property
    def content_type(self) -> str:
        return FORMATS[self.image_format]


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


def encode_image(pixels: np.ndarray, config: RenderConfig) -> bytes:
    """(S, S, 3) uint8 -> PNG or WebP bytes, upscaled to config.size with a Lanczos filter."""
    image = Image.fromarray(pixels)
    if config.size and config.size != image.width:
        image = image.resize((config.size, config.size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if config.image_format == "png":
        image.save(buffer, format="PNG", compress_level=6)
    else:
        image.save(buffer, format="WEBP", quality=90, method=4)
    return buffer.getvalue()


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
