"""The demo catalog: real photos, tinted, with realistic and reproducible attributes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from productgen.catalog import CATEGORIES, PALETTE, DemoCatalog, FashionMNIST, build_demo_catalog
from productgen.catalog.demo import BRANDS, TITLE_TEMPLATES
from productgen.catalog.schema import SIZES_BY_GROUP
from tests.conftest import files_bytes

PALETTE_RGB = np.array(list(PALETTE.values()), dtype=np.float64)
PALETTE_NAMES = list(PALETTE)


def _estimated_colour(photo: np.ndarray) -> str:
    """The palette colour that best explains a photo's brightest foreground pixels under shading.

    Interior: the half of the non-white pixels farthest from white (edges blend into the
    background). For each palette colour p, the best shade s in [0.45, 1] (the range the tint uses)
    of the interior's median pixel x; the nearest s*p wins.
    """
    rgb = photo.reshape(-1, 3).astype(np.float64)
    away = (255 - rgb).sum(axis=1)
    fg = rgb[away > 30]
    interior = fg[away[away > 30] >= np.median(away[away > 30])]
    x = np.median(interior, axis=0)
    scale = np.clip(PALETTE_RGB @ x / (PALETTE_RGB**2).sum(axis=1), 0.45, 1.0)
    distance = np.linalg.norm(x[None, :] - scale[:, None] * PALETTE_RGB, axis=1)
    return PALETTE_NAMES[int(np.argmin(distance))]


def test_catalog_has_the_documented_columns_and_types(small_demo: DemoCatalog) -> None:
    """Parquet and CSV hold the same rows; skus are stable and unique; timestamps are UTC."""
    parquet = pd.read_parquet(small_demo.catalog_parquet)
    csv = pd.read_csv(small_demo.catalog_csv, dtype=str, keep_default_na=False)
    assert list(parquet.columns) == [
        "sku", "title", "brand", "color", "size", "category", "split", "image", "updated_at",
    ]  # fmt: skip
    assert len(parquet) == 700 and parquet["sku"].is_unique
    assert parquet["sku"].str.fullmatch(r"FM-(TRAIN|HOLDOUT)-\d{6}").all()
    assert str(parquet["updated_at"].dt.tz) == "UTC"
    assert csv["sku"].tolist() == parquet["sku"].tolist()
    assert csv["title"].tolist() == parquet["title"].tolist()
    assert csv["updated_at"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()


def test_stratified_subset_keeps_every_category_in_both_splits(small_demo: DemoCatalog) -> None:
    """--limit keeps the official split ratio and every category in each split."""
    catalog = pd.read_parquet(small_demo.catalog_parquet)
    counts = catalog.groupby(["split", "category"]).size()
    assert (counts.loc["train"] == 60).all() and len(counts.loc["train"]) == 10
    assert (counts.loc["holdout"] == 10).all() and len(counts.loc["holdout"]) == 10


def test_variety_of_attributes(small_demo: DemoCatalog) -> None:
    """All colours, 20+ brands, many title shapes; sizes fit the category; titles name the colour."""
    catalog = pd.read_parquet(small_demo.catalog_parquet)
    assert set(catalog["color"]) == set(PALETTE) and len(PALETTE) >= 12
    assert catalog["brand"].nunique() >= 20 and len(BRANDS) >= 20
    shapes = {re.sub(r"[A-Za-z0-9&'-]+", "w", t) for t in catalog["title"]}
    assert len(TITLE_TEMPLATES) >= 10 and len(shapes) >= 10
    groups = {name: group for name, group, _ in CATEGORIES}
    for row in catalog.itertuples():
        assert row.size in SIZES_BY_GROUP[groups[row.category]], row
        assert row.color in row.title.lower(), row
        assert row.brand in row.title, row


def test_every_photo_decodes_at_the_requested_size(small_demo: DemoCatalog) -> None:
    """One RGB PNG per row, 32 px square, named by sku."""
    catalog = pd.read_parquet(small_demo.catalog_parquet)
    for row in catalog.itertuples():
        assert row.image == f"images/{row.sku}.png"
        with Image.open(small_demo.directory / row.image) as im:
            assert im.format == "PNG" and im.mode == "RGB" and im.size == (32, 32)
    assert len(list((small_demo.directory / "images").iterdir())) == len(catalog)


def test_tint_is_visible(small_demo: DemoCatalog) -> None:
    """The foreground's colour is nearest the catalog colour; the background stays white."""
    catalog = pd.read_parquet(small_demo.catalog_parquet)
    hits = 0
    for row in catalog.itertuples():
        photo = np.asarray(Image.open(small_demo.directory / row.image))
        assert photo[0, 0].tolist() == [255, 255, 255]
        hits += _estimated_colour(photo) == row.color
    assert hits / len(catalog) >= 0.97


def test_tint_keeps_the_items_shading(small_demo: DemoCatalog) -> None:
    """The item is not a flat silhouette: texture survives as varied shades of the colour."""
    catalog = pd.read_parquet(small_demo.catalog_parquet)
    light = catalog[~catalog["color"].isin(["black", "navy"])].head(50)
    for row in light.itertuples():
        photo = np.asarray(Image.open(small_demo.directory / row.image)).astype(np.float64)
        fg = photo.reshape(-1, 3)[(255 - photo.reshape(-1, 3)).sum(axis=1) > 150]
        assert fg.sum(axis=1).std() > 10, row.sku


def test_same_seed_same_bytes_other_seed_other_catalog(fashion_mnist: FashionMNIST, tmp_path: Path) -> None:
    """Two builds with one seed are byte-identical; another seed changes the attributes."""
    a = build_demo_catalog(fashion_mnist, tmp_path / "a", limit=120, seed=7)
    b = build_demo_catalog(fashion_mnist, tmp_path / "b", limit=120, seed=7, workers=1)
    c = build_demo_catalog(fashion_mnist, tmp_path / "c", limit=120, seed=8)
    assert files_bytes(a.directory) == files_bytes(b.directory)
    colours_a = pd.read_parquet(a.catalog_parquet)["color"].tolist()
    colours_c = pd.read_parquet(c.catalog_parquet)["color"].tolist()
    assert colours_a != colours_c


def test_a_subset_row_equals_the_same_row_of_a_larger_catalog(
    small_demo: DemoCatalog, fashion_mnist: FashionMNIST, tmp_path: Path
) -> None:
    """Attributes are drawn per item, so --limit changes which rows, never what a row says."""
    larger = build_demo_catalog(fashion_mnist, tmp_path / "big", limit=3000, seed=0)
    small = pd.read_parquet(small_demo.catalog_parquet).set_index("sku")
    big = pd.read_parquet(larger.catalog_parquet).set_index("sku")
    shared = small.index.intersection(big.index)
    assert len(shared) > 50
    pd.testing.assert_frame_equal(small.loc[shared], big.loc[shared])
    for sku in shared[:20]:
        image = f"images/{sku}.png"
        assert (small_demo.directory / image).read_bytes() == (larger.directory / image).read_bytes()


def test_size_option_scales_the_photos(fashion_mnist: FashionMNIST, tmp_path: Path) -> None:
    """--size 64 gives 64 px photos of the same items."""
    built = build_demo_catalog(fashion_mnist, tmp_path, limit=20, size=64)
    for path in (tmp_path / "images").iterdir():
        assert Image.open(path).size == (64, 64)
    assert built.rows == 20


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "productgen", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_cli_builds_a_catalog_and_prints_where(tmp_path: Path) -> None:
    """`productgen demo-catalog` writes the catalog and prints its paths."""
    result = _cli("demo-catalog", "--out", str(tmp_path / "cat"), "--limit", "30", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "cat" / "catalog.parquet") in result.stdout
    assert len(pd.read_csv(tmp_path / "cat" / "catalog.csv")) == 30


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--limit", "0"], "--limit must be between 1 and 70000"),
        (["--size", "4"], "--size must be between 8 and 1024"),
    ],
)
def test_cli_bad_options_give_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    """Bad options exit 2 with one line naming the option, and no traceback."""
    result = _cli("demo-catalog", "--out", str(tmp_path), *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"]
    assert expected in result.stderr and "Traceback" not in result.stderr
