"""Training data: snapshot rows with a photo, decoded once into a uint8 tensor file.

    snapshot rows (+ their embeddings, when training) + photos
      -> conditions (N, C) float32, labels per attribute, images (N, 3, S, S) uint8
      -> the snapshot's cache: images-<S>px-<fingerprint>.safetensors   (decoded once, reused)

The fingerprint names the rows, their descriptions and photos: it is computed from the rows
alone, without reading an embedding or a photo. No PNG is decoded during training; on a GPU the
whole uint8 set sits on the device.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from productgen.atomic import atomic_path
from productgen.conditioning import PARTS, ConditionConfig, Vocabulary, snapshot_conditions
from productgen.snapshot import Snapshot

__all__ = ["TrainingSet", "decode_photos", "load_training_set", "training_fingerprint"]


@dataclass
class TrainingSet:
    """Everything the loop needs, aligned row for row."""

    images: torch.Tensor  # (N, 3, S, S) uint8
    conditions: torch.Tensor  # (N, C) float32; (N, 0) when loaded without conditioning
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


_ROW_COLUMNS = ["sku", "title", "color", "category", "content_hash", "image", "split"]


def _select(snapshot: Snapshot, exclude_split: str) -> tuple[np.ndarray, pd.DataFrame, list[str], int]:
    """Rows with a readable photo outside `exclude_split`: their indices, rows, photo paths, missing."""
    rows = snapshot.read_rows(_ROW_COLUMNS)
    for name in ("color", "category"):
        if name not in rows.columns:
            rows[name] = None
    keep = rows["image"].notna().to_numpy() if "image" in rows.columns else np.zeros(len(rows), bool)
    if "split" in rows.columns:
        keep = keep & (rows["split"] != exclude_split).to_numpy()
    root = snapshot.image_root()
    paths = [str(root / p) if keep[i] else "" for i, p in enumerate(rows.get("image", [None] * len(rows)))]
    exists = np.array([bool(p) and os.path.isfile(p) for p in paths], bool)
    missing = int((keep & ~exists).sum())
    keep = keep & exists
    if not keep.any():
        raise ValueError(f"{snapshot.root}: no row has a readable photo to train on (image column, {root})")
    index = np.flatnonzero(keep)
    return index, rows.iloc[index].reset_index(drop=True), [paths[i] for i in index], missing


def _fingerprint(rows: pd.DataFrame, image_size: int, parts: Sequence[str]) -> str:
    digest = hashlib.sha256(f"{image_size}|{tuple(parts)}".encode())
    for column in ("sku", "content_hash", "image"):
        digest.update("\x1f".join(rows[column].astype(str)).encode())
    return digest.hexdigest()[:16]


def training_fingerprint(
    snapshot: Path, image_size: int, parts: Sequence[str] = PARTS, *, exclude_split: str = "holdout"
) -> str:
    """The fingerprint `load_training_set` would give, from the rows alone (no embedding, no photo)."""
    _, rows, _, _ = _select(Snapshot(snapshot), exclude_split)
    return _fingerprint(rows, image_size, parts)


def _photos(snapshot: Snapshot, paths: list[str], image_size: int, fingerprint: str) -> torch.Tensor:
    cache = snapshot.cache_file(f"images-{image_size}px-{fingerprint}.safetensors")
    if cache.is_file():
        return load_file(cache)["images"]
    images = decode_photos(paths, image_size)
    with atomic_path(cache) as tmp:
        save_file({"images": images}, str(tmp))
    return images


def load_training_set(
    snapshot: Path,
    image_size: int,
    conditioning: ConditionConfig | None,
    *,
    exclude_split: str = "holdout",
) -> TrainingSet:
    """Rows with a photo (not in `exclude_split`, when the catalog has a split column).

    conditioning: the condition vectors to load with them; None for photos and labels alone.
    """
    snap = Snapshot(snapshot)
    index, rows, paths, missing = _select(snap, exclude_split)
    parts = conditioning.parts if conditioning else PARTS
    fingerprint = _fingerprint(rows, image_size, parts)
    images = _photos(snap, paths, image_size, fingerprint)

    categories = sorted({c for c in rows["category"] if c})
    colors = sorted({c for c in rows["color"] if c})
    if conditioning is None:
        conditions = np.zeros((len(rows), 0), np.float32)
        category_embeddings = np.zeros((len(categories), 0), np.float32)
    else:
        conditions = snapshot_conditions(snap, conditioning)[0][index]
        # each category's own embedding, for reading categories from prompts
        by_row = snap.read_embeddings("category_embedding")[index]
        first = {c: i for i, c in reversed(list(enumerate(rows["category"]))) if c}
        category_embeddings = (
            np.stack([by_row[first[name]] for name in categories])
            if categories
            else (np.zeros((0, conditioning.text_dim), np.float32))
        )
    vocabulary = Vocabulary(categories, colors, category_embeddings.astype(np.float32))
    labels = {
        "category": torch.from_numpy(vocabulary.labels(rows["category"].tolist(), "category")),
        "color": torch.from_numpy(vocabulary.labels(rows["color"].tolist(), "color")),
    }
    return TrainingSet(
        images=images,
        conditions=torch.from_numpy(np.ascontiguousarray(conditions)),
        labels={k: v for k, v in labels.items() if (v >= 0).any()},
        rows=rows[["sku", "title", "color", "category"]],
        vocabulary=vocabulary,
        fingerprint=fingerprint,
        missing_images=missing,
    )
