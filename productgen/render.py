"""Render images from a trained generator: one pipeline from catalog rows or free text to pixels.

    RenderPipeline(trained generator, reader of attributes, text encoder)
      1. check inputs      prompts or stored conditions, one seed per image
      2. conditions       prompts are read (colour, category) and encoded; rows bring theirs
      3. noise            one draw per seed: N(0, 1) of the model's z width
      4. generate         the eval-mode generator, `batch_size` images at a time (a VAE's turns
                          the noise into a code of its fitted latent prior first)
      5. decode           [-1, 1] floats -> (N, S, S, 3) uint8

Rendering knows nothing of S3 or Prefect; publish, evaluate and the sample sheet all call the
pipeline. The same SKU with the same model version always gives the same pixels: the noise comes
from (sku, model version, variant) alone, BatchNorm uses its stored statistics and the generator
runs on one CPU thread, so an image depends neither on which rows share its batch
(tests/test_render.py) nor on which process or Dask worker renders it (tests/test_dask.py).
Other CPU kernels (another instruction set) or a GPU may round differently: a level in a pixel.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from productgen.conditioning import Conditioner
from productgen.runs import TrainedGenerator, load_generator
from productgen.sheets import labelled_grid, save_png, to_uint8
from productgen.snapshot import Snapshot
from productgen.text import EncodeConfig, TextEncoder

__all__ = [
    "FORMATS",
    "RenderConfig",
    "RenderOutput",
    "RenderPipeline",
    "check_truncation",
    "encode_image",
    "noise_seed",
    "same_kernels",
    "sample_sheet",
]

FORMATS = {"png": "image/png", "webp": "image/webp"}
GENERATE_ROWS = 64  # rows per generator call on CPU, whatever the caller's batch (see same_kernels)


@dataclass(frozen=True)
class RenderConfig:
    """How images are rendered and encoded."""

    variants: int = 1  # images per SKU, each from its own seed
    image_format: str = "png"
    size: int | None = None  # output pixels (square); None: the model's own size
    batch_size: int = 256  # rows per generator call
    truncation: float = 1.0  # psi: < 1 trades variety for typical images (1: none)

    def __post_init__(self) -> None:
        if self.image_format not in FORMATS:
            raise ValueError(f"format {self.image_format!r} is not supported; use {' or '.join(FORMATS)}")
        if self.variants < 1:
            raise ValueError(f"variants must be at least 1; got {self.variants}")
        if self.size is not None and not 8 <= self.size <= 4096:
            raise ValueError(f"size must be between 8 and 4096 pixels; got {self.size}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1; got {self.batch_size}")
        check_truncation(self.truncation)

    @property
    def content_type(self) -> str:
        return FORMATS[self.image_format]


def check_truncation(psi: float) -> float:
    if not isinstance(psi, (int, float)) or not 0.0 <= psi <= 1.0:
        raise ValueError(f"truncation must be from 0 to 1 (1: none); got {psi!r}")
    return float(psi)


def noise_seed(sku: str, model_version: str, variant: int = 0) -> int:
    """A 63-bit seed from (sku, model version, variant): stable across runs and machines."""
    digest = hashlib.blake2b(f"{sku}\x1f{model_version}\x1f{variant}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << 63) - 1)


@dataclass(frozen=True)
class RenderOutput:
    """What one pipeline call made."""

    images: np.ndarray  # (N, S, S, 3) uint8
    read: list[dict[str, object]] | None  # per prompt: what was read (attributes.READ_COLUMNS); None for rows


class RenderPipeline:
    """A trained generator with the parts that turn rows or prompts into its conditions.

    The text encoder is loaded on the first prompt only: rendering catalog rows uses the
    embeddings their snapshot already holds.
    """

    def __init__(
        self,
        trained: TrainedGenerator,
        *,
        conditioner: Conditioner | None = None,
        encoder: TextEncoder | None = None,
        batch_size: int = 256,
    ) -> None:
        self.generator = trained.generator
        self.conditioner = conditioner or trained.conditioner
        self.text_model = trained.text_model
        self.version = trained.version
        self.batch_size = batch_size
        self._encoder = encoder

    @classmethod
    def from_run(
        cls,
        run_dir: Path,
        device: str | torch.device = "cpu",
        *,
        encoder: TextEncoder | None = None,
        batch_size: int = 256,
    ) -> RenderPipeline:
        """The pipeline of a run folder's model."""
        return cls(load_generator(run_dir, device), encoder=encoder, batch_size=batch_size)

    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            self._encoder = TextEncoder(EncodeConfig(model=self.text_model))
        return self._encoder

    @property
    def image_size(self) -> int:
        return self.generator.config.image_size

    def seeds(self, names: Sequence[str], variant: int = 0) -> list[int]:
        """One noise seed per name (a SKU, or any stable label) under this model version."""
        return [noise_seed(name, self.version, variant) for name in names]

    def check_snapshot(self, snapshot: Path) -> Snapshot:
        """The snapshot, if it was encoded with this model's text model."""
        snap = Snapshot(snapshot)
        encoding = snap.encoding()
        if encoding.model != self.text_model:
            raise ValueError(
                f"{snapshot}: encoded with {encoding.model}, but model {self.version} reads "
                f"{self.text_model}; run `productgen encode {snapshot} --model {self.text_model}`"
            )
        return snap

    def snapshot_conditions(self, snapshot: Path) -> tuple[np.ndarray, pd.DataFrame]:
        """(N, C) conditions for a snapshot's rows, checked against the model's text model."""
        return self.conditioner.for_snapshot(self.check_snapshot(snapshot))

    def stream_conditions(
        self, snapshot: Path, positions: np.ndarray
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(positions, conditions) for sorted row positions, a window at a time (flat memory)."""
        return self.conditioner.stream(self.check_snapshot(snapshot), positions)

    @torch.no_grad()
    def __call__(
        self,
        *,
        seeds: Sequence[int],
        prompts: Sequence[str] | None = None,
        conditions: np.ndarray | None = None,
        truncation: float = 1.0,
    ) -> RenderOutput:
        """Pixels for `prompts` or for rows' stored `conditions` (N, C): one image per seed.

        truncation: psi < 1 pulls each image towards its condition's typical one (StyleGAN: w
        towards the condition's mean w; the other families: the code towards its prior's mean).
        """
        psi = check_truncation(truncation)
        # 1. check inputs
        if (prompts is None) == (conditions is None):
            raise ValueError("render either prompts or conditions, not both or neither")
        n = len(prompts) if prompts is not None else len(conditions)
        if len(seeds) != n:
            raise ValueError(f"{len(seeds)} seeds for {n} images; give one seed per image")
        # 2. conditions
        read = None
        if prompts is not None:  # each distinct prompt is read and encoded once
            distinct = list(dict.fromkeys(prompts))
            at = {text: i for i, text in enumerate(distinct)}
            index = [at[text] for text in prompts]
            vectors, found = self.conditioner.for_prompts(distinct, self.encoder)
            conditions, read = vectors[index], found.iloc[index].to_dict("records")
        expected = self.conditioner.config.dim
        if conditions.ndim != 2 or conditions.shape[1] != expected:
            raise ValueError(f"conditions of shape {conditions.shape}; the model takes (N, {expected})")
        # 3-5. noise per seed, generate in batches, decode to uint8
        noise_dim = self.generator.config.noise_dim
        device = next(self.generator.parameters()).device
        # on CPU every generator call has the same shape and one thread: see same_kernels
        rows = self.batch_size if device.type == "cuda" else GENERATE_ROWS
        images = []
        with same_kernels():
            for start in range(0, n, rows):
                batch = slice(start, start + rows)
                z = torch.stack(
                    [torch.randn(noise_dim, generator=torch.Generator().manual_seed(s)) for s in seeds[batch]]
                )  # (B, noise_dim): the code's values first (a model without a detail code: z_dim)
                c = torch.from_numpy(np.ascontiguousarray(conditions[batch], np.float32))  # (B, C)
                k = len(z)
                if device.type != "cuda" and k < rows:  # pad with copies of the first row
                    z, c = (
                        torch.cat([z, z[:1].expand(rows - k, -1)]),
                        torch.cat([c, c[:1].expand(rows - k, -1)]),
                    )
                generated = self.generator(z.to(device), c.to(device), psi=psi)
                images.append(to_uint8(generated)[:k])  # (B, S, S, 3)
        size = self.image_size
        pixels = np.concatenate(images) if images else np.zeros((0, size, size, 3), np.uint8)
        return RenderOutput(pixels, read)


@contextmanager
def same_kernels() -> Iterator[None]:
    """Generate on one CPU thread, `GENERATE_ROWS` rows per call: how a CPU kernel splits its sums
    (over threads, and into blocks chosen by the batch's size) changes its rounding, and an image
    must depend neither on its batch mates nor on the cores of the process that renders it (a Dask
    worker with one thread, a laptop with two). Measured here: one thread at 64 rows generated
    1,340 img/s, two threads at 256 rows 1,190; throughput comes from processes and the upload pool."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


def sample_sheet(
    pipeline: RenderPipeline,
    texts: Sequence[str],
    *,
    n: int = 8,
    out: Path,
    seed: int = 0,
    title: str = "",
    truncation: float = 1.0,
) -> list[dict]:
    """Render each free-text description n times into a labelled sheet; returns what was read."""
    repeated = [text for text in texts for _ in range(n)]
    seeds = [noise_seed(f"prompt-{seed}", pipeline.version, k) for _ in texts for k in range(n)]
    output = pipeline(prompts=repeated, seeds=seeds, truncation=truncation)
    labels = [text if k == 0 else "" for text in texts for k in range(n)]
    heading = f"{title} (model {pipeline.version})".strip()
    save_png(labelled_grid(list(output.images), labels, n, title=heading), out)
    assert output.read is not None
    return output.read[::n]
