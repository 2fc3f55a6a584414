"""Training data: snapshot rows with a photo, decoded once into a uint8 tensor file.

    snapshot rows (+ their embeddings, when training) + photos
      -> conditions (N, C) float32, labels per attribute, images (N, 3, S, S) uint8
      -> the snapshot's cache: images-<S>px-<fingerprint>.safetensors   (decoded once, reused)

The fingerprint names the rows, their descriptions and photos: it is computed from the rows
alone, without reading an embedding or a photo. No PNG is decoded during training; on a GPU the
whole uint8 set sits on the device.

Photos are untrusted. A path is used only if it is a regular file inside the image folder with
no symbolic link on the way and at most MAX_PHOTO_BYTES; a photo is decoded only if its header
declares at most MAX_PHOTO_PIXELS. A photo that fails any check or does not decode is skipped
with its reason (TrainingSet.skipped, the snapshot's photo rejects): one bad file never stops a run.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import torch
from PIL import Image

from productgen.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from productgen.conditioning import PARTS, ConditionConfig, Vocabulary, snapshot_conditions
from productgen.snapshot import Snapshot

__all__ = [
    "DECODE_ERRORS", "TrainingSet", "brief", "check_pixels", "decode_photo", "decode_photos",
    "load_training_set", "photo_path", "training_fingerprint",
]  # fmt: skip


@dataclass
class TrainingSet:
    """Everything the loop needs, aligned row for row."""

    images: torch.Tensor  # (N, 3, S, S) uint8
    conditions: torch.Tensor  # (N, C) float32; (N, 0) when loaded without conditioning
    labels: dict[str, torch.Tensor]  # attribute -> (N,) int64, -1 = unknown
    rows: pd.DataFrame  # sku, title, color, category of each row (colour and category as read)
    vocabulary: Vocabulary
    fingerprint: str  # of the rows, their descriptions, what was read from them, photos, image size
    missing_images: int  # rows whose photo file is not there
    skipped: pd.DataFrame = field(default_factory=pd.DataFrame)  # sku, image, reason: photos left out

    def __len__(self) -> int:
        return len(self.images)


MAX_PHOTO_BYTES = 32 << 20  # a product photo, not an archive
MAX_PHOTO_PIXELS = 50_000_000  # declared in the header; decoding more is a decompression bomb
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def check_pixels(im: Image.Image) -> None:
    """ValueError when an opened (not yet decoded) photo declares more than MAX_PHOTO_PIXELS."""
    if im.width * im.height > MAX_PHOTO_PIXELS:
        raise ValueError(f"declares {im.width}x{im.height} pixels; at most {MAX_PHOTO_PIXELS:,}")


def brief(error: Exception) -> str:
    """An exception's message on one line, at most 200 characters (for a reject's reason)."""
    return " ".join(str(error).split())[:200]


def decode_photo(path: str | BinaryIO, size: int) -> np.ndarray:
    """One photo (a path or an open file) -> (size, size, 3) uint8; raises ValueError saying why not."""
    with Image.open(path) as im:  # reads the header only
        check_pixels(im)
        im = im.convert("RGB")  # decodes: a truncated or corrupt file fails here
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.LANCZOS)
        return np.asarray(im)


def _decode_chunk(args: tuple[list[str], int]) -> tuple[np.ndarray, list[str | None]]:
    paths, size = args
    out = np.zeros((len(paths), size, size, 3), np.uint8)
    reasons: list[str | None] = [None] * len(paths)
    for i, path in enumerate(paths):
        try:
            out[i] = decode_photo(path, size)
        except DECODE_ERRORS as e:
            reasons[i] = f"photo does not decode ({brief(e)})"
    return out, reasons


def decode_photos(
    paths: list[str], size: int, workers: int | None = None
) -> tuple[torch.Tensor, list[str | None]]:
    """Decode and resize photos in parallel -> (N, 3, size, size) uint8, and per photo None or why not.

    A photo that does not decode is a zero image with its reason; the caller leaves it out.
    """
    chunks = [(paths[i : i + 2048], size) for i in range(0, len(paths), 2048)]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(chunks) <= 1:
        results = [_decode_chunk(c) for c in chunks]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_decode_chunk, chunks))
    arrays = [images for images, _ in results]
    reasons = [reason for _, chunk in results for reason in chunk]
    stacked = np.concatenate(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous(), reasons


def photo_path(root: Path, relative: str, plain_dirs: set[Path]) -> tuple[str | None, str | None]:
    """(path, None) for a usable photo file, else (None, why not). No link is followed.

    plain_dirs: folders already found not to be links (most photos share one folder).
    """
    current = root
    for part in Path(relative).parts:
        current = current / part
        if current in plain_dirs:
            continue
        if current.is_symlink():
            return None, f"{relative!r} passes through a symbolic link; photos must be files in the folder"
        if current.is_dir():
            plain_dirs.add(current)
    try:
        status = current.lstat()
    except OSError:
        return None, "photo file not found"
    if not stat.S_ISREG(status.st_mode):
        return None, f"{relative!r} is not a regular file"
    if status.st_size > MAX_PHOTO_BYTES:
        return None, f"photo is {status.st_size:,} bytes; at most {MAX_PHOTO_BYTES:,}"
    return str(current), None


_ROW_COLUMNS = ["sku", "title", "color", "category", "content_hash", "image", "split"]


def _select(
    snapshot: Snapshot, exclude_split: str
) -> tuple[np.ndarray, pd.DataFrame, list[str], int, pd.DataFrame]:
    """Rows with a usable photo path outside `exclude_split`: indices, rows, paths, missing, refused."""
    rows = snapshot.read_rows(_ROW_COLUMNS)
    for name in ("color", "category", "image"):
        if name not in rows.columns:
            rows[name] = None
    keep = rows["image"].notna().to_numpy()
    if "split" in rows.columns:
        keep = keep & (rows["split"] != exclude_split).to_numpy()
    root = snapshot.image_root()
    paths: list[str | None] = [None] * len(rows)
    refused, plain_dirs, images = [], set(), rows["image"].tolist()
    for i in np.flatnonzero(keep):
        paths[i], reason = photo_path(root, images[i], plain_dirs)
        if reason is not None:
            refused.append((i, reason))
    missing = sum(reason == "photo file not found" for _, reason in refused)
    usable = keep & np.array([p is not None for p in paths], bool)
    if not usable.any():
        raise ValueError(f"{snapshot.root}: no row has a readable photo to train on (image column, {root})")
    index = np.flatnonzero(usable)
    skipped = _skipped(rows, [i for i, _ in refused], [r for _, r in refused])
    return index, rows.iloc[index].reset_index(drop=True), [paths[i] for i in index], missing, skipped


def _skipped(rows: pd.DataFrame, positions: list[int], reasons: list[str]) -> pd.DataFrame:
    """sku, image, reason of the rows at `positions`."""
    picked = rows.iloc[positions]
    return pd.DataFrame({"sku": picked["sku"].tolist(), "image": picked["image"].tolist(), "reason": reasons})


def _fingerprint(rows: pd.DataFrame, image_size: int, parts: Sequence[str]) -> str:
    digest = hashlib.sha256(f"{image_size}|{tuple(parts)}".encode())
    for column in ("sku", "content_hash", "image"):
        digest.update("\x1f".join(rows[column].astype(str)).encode())
    return digest.hexdigest()[:16]


def _with_reads(fingerprint: str, reads: pd.DataFrame) -> str:
    """The photos' fingerprint, extended by what was read from the rows (a pinned mapping changes it)."""
    digest = hashlib.sha256(fingerprint.encode())
    for column in ("category", "color", "color_hex"):
        digest.update("\x1f".join(reads[column].astype(str)).encode())
    return digest.hexdigest()[:16]


def training_fingerprint(
    snapshot: Path, image_size: int, parts: Sequence[str] = PARTS, *, exclude_split: str = "holdout"
) -> str:
    """The fingerprint `load_training_set` would give, from the rows and reads alone (no photo decoded).

    Photos that fail to decode are known only by decoding; they leave the set, so a snapshot
    with such photos fingerprints them as it was asked to.
    """
    snap = Snapshot(snapshot)
    index, rows, _, _, _ = _select(snap, exclude_split)
    reads = snap.read_reads().iloc[index].reset_index(drop=True)
    return _with_reads(_fingerprint(rows, image_size, parts), reads)


_KEPT_REASONS = 1000  # decode failures whose reason the photo cache keeps word for word


def _read_photo_cache(cache: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The cache's tensors and metadata; None when absent, damaged or from an older layout."""
    if not cache.is_file():
        return None
    try:
        tensors, meta = load_checkpoint(cache)
    except CheckpointError:
        return None  # derived data: decode again and write it anew
    return (tensors, meta) if "images" in tensors else None


def _photos(
    snapshot: Snapshot, paths: list[str], image_size: int, fingerprint: str
) -> tuple[torch.Tensor, list[str | None]]:
    """Decoded photos and per photo None or why it did not decode; cached per fingerprint."""
    cache = snapshot.cache_file(f"images-{image_size}px-{fingerprint}.safetensors")
    cached = _read_photo_cache(cache)
    if cached is not None:
        tensors, meta = cached
        failed = tensors.get("failed", torch.zeros(len(tensors["images"]), dtype=torch.bool))
        kept = meta.get("reasons", {})
        kept = kept if isinstance(kept, dict) else {}
        reasons = [
            str(kept.get(str(i), "photo did not decode (when the photo cache was made)")) if bad else None
            for i, bad in enumerate(failed.tolist())
        ]
        return tensors["images"], reasons
    images, reasons = decode_photos(paths, image_size)
    failed = torch.tensor([r is not None for r in reasons], dtype=torch.bool)
    kept = dict(list({str(i): r for i, r in enumerate(reasons) if r is not None}.items())[:_KEPT_REASONS])
    save_checkpoint(cache, {"images": images, "failed": failed}, {"rows": len(paths), "reasons": kept})
    return images, reasons


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
    index, rows, paths, missing, skipped = _select(snap, exclude_split)
    parts = conditioning.parts if conditioning else PARTS
    fingerprint = _fingerprint(rows, image_size, parts)
    images, reasons = _photos(snap, paths, image_size, fingerprint)
    every_read = snap.read_reads()
    fingerprint = _with_reads(fingerprint, every_read.iloc[index].reset_index(drop=True))
    bad = [i for i, reason in enumerate(reasons) if reason is not None]
    if bad:  # decoded rows that failed leave the set, with their reasons
        skipped = pd.concat([skipped, _skipped(rows, bad, [reasons[i] for i in bad])], ignore_index=True)
        good = np.setdiff1d(np.arange(len(rows)), bad)
        if not len(good):
            raise ValueError(f"{snapshot}: no photo decodes; see the reasons in {snap.photo_rejects}")
        index, rows, images = index[good], rows.iloc[good].reset_index(drop=True), images[good]
    if len(skipped) - missing > 0:
        snap.write_photo_rejects(skipped)

    if conditioning is None:  # photos and what was read: the judge's needs
        reads = every_read.iloc[index].reset_index(drop=True)
        conditions = np.zeros((len(rows), 0), np.float32)
        vocabulary = Vocabulary.from_rows(reads, np.zeros((len(rows), 0)), np.zeros((len(rows), 0)))
    else:
        every, with_reads, _ = snapshot_conditions(snap, conditioning)
        conditions, reads = every[index], with_reads.iloc[index].reset_index(drop=True)
        vocabulary = Vocabulary.from_rows(
            reads,
            np.nan_to_num(snap.read_embeddings("category_embedding"))[index],
            np.nan_to_num(snap.read_embeddings("color_embedding"))[index],
        )
    rows = rows.assign(category=reads["category"].to_numpy(), color=reads["color"].to_numpy())
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
        skipped=skipped,
    )
