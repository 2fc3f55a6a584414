"""Training data: snapshot rows with a photo, decoded once into a uint8 tensor file.

    valid.parquet + embeddings.parquet + photos
      -> conditions (N, C) float32, labels per attribute, images (N, 3, S, S) uint8
      -> SNAPSHOT/.cache/images-<S>px-<fingerprint>.safetensors   (decoded once, reused)

No PNG is decoded during training; on a GPU the whole uint8 set sits on the device.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from productgen.catalog.tables import atomic_path
from productgen.conditioning import ConditionConfig, Vocabulary, snapshot_conditions

__all__ = ["TrainingSet", "decode_photos", "load_training_set", "training_fingerprint"]


@dataclass
class TrainingSet:
    """Everything the loop needs, aligned row for row."""

    images: torch.Tensor  # (N, 3, S, S) uint8
    conditions: torch.Tensor  # (N, C) float32
    labels: dict[str, torch.Tensor]  # attribute -> (N,) int64, -1 = unknown
    rows: pd.DataFrame  # sku, title, color, category of each row
    vocabulary: Vocabulary
    fingerprint: str  # of the rows, their descriptions, photos and image size
    missing_images: int

    def __len__(self) -> int:
        return len(self.images)


def _decode_chunk(args: tuple[list[str], int]) -> np.ndarray:
    paths, size = args
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, path in enumerate(paths):
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.LANCZOS)
            out[i] = np.asarray(im)
    return out


def decode_photos(paths: list[str], size: int, workers: int | None = None) -> torch.Tensor:
    """Decode and resize photos in parallel -> (N, 3, size, size) uint8."""
    chunks = [(paths[i : i + 2048], size) for i in range(0, len(paths), 2048)]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(chunks) <= 1:
        arrays = [_decode_chunk(c) for c in chunks]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            arrays = list(pool.map(_decode_chunk, chunks))
    stacked = np.concatenate(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()


def _image_root(snapshot: Path) -> Path:
    summary = json.loads((snapshot / "summary.json").read_text())
    root = summary["image_root"]
    if "://" in root:
        raise ValueError(
            f"{snapshot}: photos live at {root}; training reads local photos only, copy them first"
        )
    return Path(root)


def _select(
    snapshot: Path, conditioning: ConditionConfig, exclude_split: str
) -> tuple[np.ndarray, pd.DataFrame, list[str], int]:
    """Rows with a readable photo outside `exclude_split`: conditions, rows, photo paths, missing."""
    conditions, rows = snapshot_conditions(snapshot, conditioning)
    keep = rows["image"].notna().to_numpy()
    if "split" in rows.columns:
        keep = keep & (rows["split"] != exclude_split).to_numpy()
    root = _image_root(snapshot)
    paths = [str(root / p) if keep[i] else "" for i, p in enumerate(rows["image"])]
    exists = np.array([bool(p) and os.path.isfile(p) for p in paths])
    missing = int((keep & ~exists).sum())
    keep = keep & exists
    if not keep.any():
        raise ValueError(f"{snapshot}: no row has a readable photo to train on (image column, {root})")
    rows, conditions = rows[keep].reset_index(drop=True), conditions[keep]
    return conditions, rows, [p for p, k in zip(paths, keep, strict=True) if k], missing


def _fingerprint(rows: pd.DataFrame, image_size: int, conditioning: ConditionConfig) -> str:
    digest = hashlib.sha256(f"{image_size}|{conditioning.parts}".encode())
    for column in ("sku", "content_hash", "image"):
        digest.update("\x1f".join(rows[column].astype(str)).encode())
    return digest.hexdigest()[:16]


def training_fingerprint(
    snapshot: Path, image_size: int, conditioning: ConditionConfig, *, exclude_split: str = "holdout"
) -> str:
    """The fingerprint `load_training_set` would give, without decoding a photo."""
    _, rows, _, _ = _select(snapshot, conditioning, exclude_split)
    return _fingerprint(rows, image_size, conditioning)


def load_training_set(
    snapshot: Path, image_size: int, conditioning: ConditionConfig, *, exclude_split: str = "holdout"
) -> TrainingSet:
    """Rows with a photo (not in `exclude_split`, when the catalog has a split column)."""
    conditions, rows, paths, missing = _select(snapshot, conditioning, exclude_split)
    fingerprint = _fingerprint(rows, image_size, conditioning)

    cache = snapshot / ".cache" / f"images-{image_size}px-{fingerprint}.safetensors"
    if cache.is_file():
        images = load_file(cache)["images"]
    else:
        images = decode_photos(paths, image_size)
        cache.parent.mkdir(exist_ok=True)
        with atomic_path(cache) as tmp:
            save_file({"images": images}, str(tmp))

    categories = sorted({c for c in rows["category"] if c})
    colors = sorted({c for c in rows["color"] if c})
    category_embeddings = np.zeros((len(categories), conditioning.text_dim), np.float32)
    if "category" in conditioning.parts and categories:
        # the category part of the condition holds each category's own embedding
        before = conditioning.parts[: conditioning.parts.index("category")]
        start = sum(3 if p == "rgb" else conditioning.text_dim for p in before)
        first = {c: i for i, c in reversed(list(enumerate(rows["category"])))}
        for k, name in enumerate(categories):
            category_embeddings[k] = conditions[first[name], start : start + conditioning.text_dim]
    vocabulary = Vocabulary(categories, colors, category_embeddings)
    labels = {
        "category": torch.from_numpy(vocabulary.labels(rows["category"].tolist(), "category")),
        "color": torch.from_numpy(vocabulary.labels(rows["color"].tolist(), "color")),
    }
    return TrainingSet(
        images=images,
        conditions=torch.from_numpy(conditions),
        labels={k: v for k, v in labels.items() if (v >= 0).any()},
        rows=rows[["sku", "title", "color", "category"]],
        vocabulary=vocabulary,
        fingerprint=fingerprint,
        missing_images=missing,
    )
