"""Build the demo catalog: Fashion-MNIST's real product photos dressed as an e-commerce export.

Every photo becomes one SKU with a brand, a colour from the palette, a size that fits its
category and a free-text title drawn from varied templates. The photo is tinted with the SKU's
colour on a white background, keeping the item's own shading and texture.

Attributes are drawn per item from the seed, so a row is the same whether it comes from the full
catalog or from a `limit` subset, and the same seed always gives the same bytes.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from productgen.catalog.fashion_mnist import FashionMNIST
from productgen.catalog.schema import CATEGORIES, DEMO_COLUMNS, PALETTE, SIZES_BY_GROUP
from productgen.catalog.tables import write_table

__all__ = ["BRANDS", "TITLE_TEMPLATES", "DemoCatalog", "build_demo_catalog", "tint"]

BRANDS = (
    "Northwind", "Fjordline", "Calloway & Co", "Alder Street", "Marlowe", "Hearth & Loom",
    "Ostrava", "Bellweather", "Kestrel", "Juniper Lane", "Saltmarsh", "Corvid", "Halden",
    "Verano", "Ironbark", "Meridian Atelier", "Tallis", "Quarry Row", "Lumen & Thread",
    "Pemberly", "Wrenfield", "Solvik",
)  # fmt: skip

STYLES = (
    "classic", "everyday", "premium", "lightweight", "essential", "modern", "vintage",
    "minimalist", "relaxed", "tailored",
)  # fmt: skip

# {size} is a phrase that reads right for every group: "size M", "EU 41", "one size".
TITLE_TEMPLATES = (
    "{brand} {noun} in {color}, {size}",
    "{Color} {noun} by {brand} – {size}",
    "{brand} {style} {noun}, {color}",
    "{Noun} | {brand} | {color} | {size}",
    "{Style} {color} {noun} from {brand}",
    "{brand} - {color} {noun} ({size})",
    "{Who} {style} {noun} in {color} by {brand}",
    "{Color} {noun}, {style}, {size} - {brand}",
    "{brand} essentials: {noun} in {color}",
    "New season {noun} - {color} - {brand}",
    "{brand} {noun} {color} {size}",
    "{Style} {noun} in {color} with a soft finish - {brand}",
)

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_CHUNK = 2048  # photos per worker task: large enough to amortise IPC, small enough to balance


@dataclass(frozen=True)
class DemoCatalog:
    """What `build_demo_catalog` wrote."""

    directory: Path
    rows: int
    catalog_parquet: Path
    catalog_csv: Path


def tint(grey: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Tint grey photos (N, H, W) uint8 (white item on black) -> (N, H, W, 3) uint8 on white.

    rgb: (N, 3) uint8 colours. The item keeps its shading: bright parts of the photo take the full
    colour, dark texture a darker shade of it; faint edges blend into the white background.
    """
    v = grey.astype(np.float32)[..., None] / 255.0  # (N, H, W, 1)
    alpha = np.clip(v * 6.0, 0.0, 1.0)  # opaque from ~17% intensity: keeps dark texture inside
    shade = 0.45 + 0.55 * v
    colour = rgb.astype(np.float32)[:, None, None, :]  # (N, 1, 1, 3)
    out = (1.0 - alpha) * 255.0 + alpha * colour * shade
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _resize(grey: np.ndarray, size: int) -> np.ndarray:
    if grey.shape[-1] == size:
        return grey
    return np.stack(
        [np.asarray(Image.fromarray(g).resize((size, size), Image.Resampling.BICUBIC)) for g in grey]
    )


def _write_photos(args: tuple[np.ndarray, np.ndarray, list[str], str, int]) -> int:
    """Worker: resize, tint, encode and write one chunk of photos; returns bytes written."""
    grey, rgb, skus, image_dir, size = args
    photos = tint(_resize(grey, size), rgb)
    written = 0
    for photo, sku in zip(photos, skus, strict=True):
        buf = BytesIO()
        Image.fromarray(photo, "RGB").save(buf, format="PNG")
        data = buf.getvalue()
        with open(os.path.join(image_dir, f"{sku}.png"), "wb") as f:
            f.write(data)
        written += len(data)
    return written


def _stratified(labels: np.ndarray, split: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a subset of about `limit` rows with every (split, label) cell in proportion."""
    keys = split.astype(np.int64) * 100 + labels.astype(np.int64)
    cells, counts = np.unique(keys, return_counts=True)
    share = counts / len(keys) * limit
    quota = np.floor(share).astype(int)
    # largest remainders first, so small cells (the holdout split) are not starved
    for i in np.argsort(-(share - quota), kind="stable")[: limit - quota.sum()]:
        quota[i] += 1
    chosen = [rng.permutation(np.flatnonzero(keys == cell))[:q] for cell, q in zip(cells, quota, strict=True)]
    return np.sort(np.concatenate(chosen))


def _attributes(labels: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw brand, colour, size, title and updated_at for every item, vectorised."""
    n = len(labels)
    colours = list(PALETTE)
    colour_idx = rng.integers(len(colours), size=n)
    brand_idx = rng.integers(len(BRANDS), size=n)
    template_idx = rng.integers(len(TITLE_TEMPLATES), size=n)
    style_idx = rng.integers(len(STYLES), size=n)
    noun_pick = rng.integers(1 << 30, size=n)
    size_pick = rng.integers(1 << 30, size=n)
    who_pick = rng.integers(2, size=n)
    seconds = rng.integers(300 * 86400, size=n)

    sizes, titles = [], []
    for i in range(n):
        _, group, nouns = CATEGORIES[labels[i]]
        group_sizes = SIZES_BY_GROUP[group]
        size = group_sizes[size_pick[i] % len(group_sizes)]
        noun, colour, style = nouns[noun_pick[i] % len(nouns)], colours[colour_idx[i]], STYLES[style_idx[i]]
        phrase = f"size {size}" if group == "apparel" else size
        title = TITLE_TEMPLATES[template_idx[i]].format(
            brand=BRANDS[brand_idx[i]], noun=noun, Noun=noun[0].upper() + noun[1:],
            color=colour, Color=colour.capitalize(), style=style, Style=style.capitalize(),
            size=phrase, Who=("Women's", "Men's")[who_pick[i]],
        )  # fmt: skip
        sizes.append(size)
        titles.append(title)
    return {
        "brand": np.array(BRANDS, dtype=object)[brand_idx],
        "color": np.array(colours, dtype=object)[colour_idx],
        "color_idx": colour_idx,
        "size": np.array(sizes, dtype=object),
        "title": np.array(titles, dtype=object),
        "updated_at": pd.Timestamp(EPOCH) + pd.to_timedelta(seconds, unit="s"),
    }


def build_demo_catalog(
    data: FashionMNIST,
    out_dir: Path,
    *,
    limit: int | None = None,
    size: int = 32,
    seed: int = 0,
    workers: int | None = None,
) -> DemoCatalog:
    """Write catalog.parquet, catalog.csv and images/<sku>.png for the demo catalog into `out_dir`."""
    if size < 8 or size > 1024:
        raise ValueError(f"--size must be between 8 and 1024 pixels, got {size}")
    images = np.concatenate([data.train_images, data.test_images])  # (70000, 28, 28)
    labels = np.concatenate([data.train_labels, data.test_labels])
    is_holdout = np.r_[np.zeros(len(data.train_labels), bool), np.ones(len(data.test_labels), bool)]
    n_train = len(data.train_labels)
    index_in_split = np.r_[np.arange(n_train), np.arange(len(data.test_labels))]

    rng = np.random.default_rng(seed)
    attrs = _attributes(labels, rng)
    if limit is not None:
        if not 1 <= limit <= len(labels):
            raise ValueError(f"--limit must be between 1 and {len(labels)}, got {limit}")
        rows = _stratified(labels, is_holdout, limit, np.random.default_rng([seed, 1]))
    else:
        rows = np.arange(len(labels))

    split = np.where(is_holdout[rows], "holdout", "train")
    skus = [f"FM-{s.upper()}-{i:06d}" for s, i in zip(split, index_in_split[rows], strict=True)]
    catalog = pd.DataFrame(
        {
            "sku": skus,
            "title": attrs["title"][rows],
            "brand": attrs["brand"][rows],
            "color": attrs["color"][rows],
            "size": attrs["size"][rows],
            "category": np.array([c[0] for c in CATEGORIES], dtype=object)[labels[rows]],
            "split": split,
            "image": [f"images/{sku}.png" for sku in skus],
            "updated_at": attrs["updated_at"][rows],
        },
        columns=list(DEMO_COLUMNS),
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    image_dir = out_dir / "images"
    image_dir.mkdir(exist_ok=True)
    palette = np.array(list(PALETTE.values()), dtype=np.uint8)
    rgb = palette[attrs["color_idx"][rows]]
    tasks = [
        (images[rows[i : i + _CHUNK]], rgb[i : i + _CHUNK], skus[i : i + _CHUNK], str(image_dir), size)
        for i in range(0, len(rows), _CHUNK)
    ]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(tasks) == 1:
        for task in tasks:
            _write_photos(task)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(_write_photos, tasks))

    parquet_path, csv_path = out_dir / "catalog.parquet", out_dir / "catalog.csv"
    write_table(catalog, parquet_path)
    write_table(catalog, csv_path)
    return DemoCatalog(out_dir, len(catalog), parquet_path, csv_path)
