"""Colour variants of a catalog's own photos: the item kept, the colour asked, exactly-once publishing."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from productgen.catalog.ingest import ingest
from productgen.manifest import read_latest
from productgen.metrics import shading_ssim, silhouette_iou
from productgen.runs import load_generator
from productgen.snapshot import Snapshot
from productgen.storage import open_store
from productgen.text import EncodeConfig, encode_snapshot
from productgen.variants import TargetColour, VariantMaker, parse_colours, publish_variants

from .conftest import train_tiny


def test_colours_are_names_or_codes_once_each() -> None:
    colours = parse_colours("Navy; olive,#7B1F3A | navy|  Sea Salt")
    assert [c.slug for c in colours] == ["navy", "olive", "7b1f3a", "sea-salt"]
    assert colours[2].rgb == (0x7B, 0x1F, 0x3A) and colours[0].hex.startswith("#")
    assert parse_colours(None) == [] and parse_colours(["red", " "]) == [TargetColour.parse("red")]
    with pytest.raises(ValueError, match="'blorple' is not a colour"):
        parse_colours("navy;blorple")
    with pytest.raises(ValueError, match="at most 32"):
        parse_colours([f"#{i:06x}" for i in range(40)])


@pytest.fixture(scope="module")
def variant_run(tiny_snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny cVAE trained long enough to know its colours (a minute on 2 cores)."""
    return train_tiny(tiny_snapshot, tmp_path_factory.mktemp("variant-run") / "run", steps=150)


def _photos(snapshot: Path, n: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    from productgen.dataset import load_training_set

    data = load_training_set(snapshot, 32, None, exclude_split="none")
    return data.images[:n].permute(0, 2, 3, 1).numpy(), data.images[:n], data.rows.head(n)


def test_a_variant_keeps_the_item_and_takes_the_colour(tiny_snapshot: Path, variant_run: Path) -> None:
    trained = load_generator(variant_run)
    assert trained.encoder is not None  # the model file carries the cVAE's encoder
    maker = VariantMaker(trained)
    pixels, photos, rows = _photos(tiny_snapshot, 24)
    conditions, every = trained.conditioner.for_snapshot(Snapshot(tiny_snapshot))
    conditions = conditions[pd.Index(every["sku"]).get_indexer(rows["sku"])]
    made = {}
    for name, rgb in (("red", (200, 30, 30)), ("blue", (40, 110, 230))):
        made[name] = maker(pixels, conditions, [rgb] * len(pixels))
        variants = torch.from_numpy(made[name]).permute(0, 3, 1, 2)
        assert float(silhouette_iou(photos, variants).mean()) > 0.9  # the same item, same place
        assert float(shading_ssim(photos, variants).mean()) > 0.7  # with its own shading
    # the colour asked: red variants are redder than blue ones, item by item
    item = torch.stack([torch.from_numpy(m).float().mean((1, 2)) for m in made.values()])  # (2, N, 3)
    assert (item[0, :, 0] - item[0, :, 2] > item[1, :, 0] - item[1, :, 2]).float().mean() > 0.9
    # deterministic, and independent of batch mates
    again = maker(pixels[5:9], conditions[5:9], [(200, 30, 30)] * 4)
    assert np.array_equal(again, made["red"][5:9])


def _catalog(tiny_snapshot: Path, root: Path) -> Path:
    """12 demo rows with their photos copied, a variant_colors column, and five bad photos."""
    rows = Snapshot(tiny_snapshot).read_rows().head(17).copy()
    source = Snapshot(tiny_snapshot).image_root()
    (root / "images").mkdir(parents=True)
    for image in rows["image"]:
        shutil.copy(source / image, root / image)
    rows["variant_colors"] = [None] * 17
    rows.loc[1, "variant_colors"] = "burgundy; #336699"  # its own colours instead of --colors
    rows.loc[12, "image"] = "images/missing.png"
    (root / "images" / "not-an-image.png").write_text("<html>hello</html>")
    rows.loc[13, "image"] = "images/not-an-image.png"
    with open(root / "images" / "huge.png", "wb") as f:
        f.truncate(40 << 20)  # sparse: larger than any product photo
    rows.loc[14, "image"] = "images/huge.png"
    os.symlink("/etc/passwd", root / "images" / "link.png")
    rows.loc[15, "image"] = "images/link.png"
    whole = (root / rows.loc[16, "image"]).read_bytes()
    (root / "images" / "truncated.png").write_bytes(whole[: len(whole) // 2])  # its header reads
    rows.loc[16, "image"] = "images/truncated.png"
    columns = ["sku", "title", "brand", "color", "size", "category", "image", "variant_colors"]
    rows[columns].to_csv(root / "catalog.csv", index=False)
    return root / "catalog.csv"


def _variant_snapshot(tiny_snapshot: Path, text_encoder, tmp_path: Path) -> Path:
    """The catalog above, ingested and encoded into tmp_path/snap."""
    ingest(_catalog(tiny_snapshot, tmp_path / "cat"), tmp_path / "snap")
    encode_snapshot(tmp_path / "snap", tmp_path / "cache", EncodeConfig(), encoder=text_encoder)
    return tmp_path / "snap"


def test_variants_publish_once_and_again_only_when_the_photo_changes(
    tiny_snapshot: Path, tiny_run: Path, text_encoder, tmp_path: Path
) -> None:
    _variant_snapshot(tiny_snapshot, text_encoder, tmp_path)
    maker = VariantMaker(load_generator(tiny_run))
    store = open_store(str(tmp_path / "store"))
    colours = parse_colours("navy,olive")

    first = publish_variants(tmp_path / "snap", maker, store, colours=colours)
    rejects = dict(zip(first.rejects["sku"], first.rejects["reason"], strict=True))
    rows = Snapshot(tmp_path / "snap").read_rows()
    bad = rows["sku"].iloc[12:17].tolist()
    assert set(rejects) == set(bad)
    assert "not found" in rejects[bad[0]] and "not an image" in rejects[bad[1]]
    assert "bytes; at most" in rejects[bad[2]] and "symbolic link" in rejects[bad[3]]
    assert "does not decode" in rejects[bad[4]]
    # 11 rows x navy, olive; one row x its own two
    assert first.publish.published == first.publish.images == 24
    latest = read_latest(store)
    manifest = pq.read_table(io.BytesIO(store.get(latest["manifest"]))).to_pandas()
    sku = rows["sku"].iloc[1]
    assert {f"{maker.version}/{sku}-burgundy.png", f"{maker.version}/{sku}-336699.png"} <= set(
        manifest["key"]
    )
    assert f"{maker.version}/{rows['sku'].iloc[0]}-navy.png" in set(manifest["key"])
    assert (manifest["variant"] == -1).all()
    for row in manifest.itertuples():
        body = store.get(row.key)
        assert hashlib.sha256(body).hexdigest() == row.sha256
        assert Image.open(io.BytesIO(body)).size == (32, 32)

    # the same again: nothing made; the same bytes in another store
    second = publish_variants(tmp_path / "snap", maker, store, colours=colours)
    assert second.publish.published == 0 and second.publish.unchanged == 24
    other = open_store(str(tmp_path / "other"))
    publish_variants(tmp_path / "snap", maker, other, colours=colours)
    assert all(other.get(k) == store.get(k) for k in manifest["key"])

    # a new photo at the same path: only that row's variants are made again
    replaced = tmp_path / "cat" / rows["image"].iloc[3]
    shutil.copy(tmp_path / "cat" / rows["image"].iloc[4], replaced)
    third = publish_variants(tmp_path / "snap", maker, store, colours=colours)
    assert third.publish.published == 2 and third.publish.unchanged == 22

    # each run that made variants stores its contact sheet: each photo, then its variants
    assert first.sheet and second.sheet is None and third.sheet
    sheet = Image.open(io.BytesIO(first.sheet_png))
    assert sheet.width > 3 * 96 and sheet.height > 8 * 96  # 3 columns (photo, navy, olive), 8 rows
    assert store.get(f"manifests/runs/{third.publish.run_id}/variants-sheet.png") == third.sheet_png


def test_a_model_without_an_encoder_says_what_to_train(tiny_run: Path) -> None:
    trained = load_generator(tiny_run)
    trained.encoder = None
    with pytest.raises(ValueError, match=r"no encoder.*train a cvae or vaegan"):
        VariantMaker(trained)


@pytest.mark.slow
def test_cli_publishes_variants_with_a_sheet_and_rejects(
    tiny_snapshot: Path, tiny_run: Path, text_encoder, tmp_path: Path
) -> None:
    _variant_snapshot(tiny_snapshot, text_encoder, tmp_path)
    command = [sys.executable, "-m", "productgen", "variants", str(tmp_path / "snap")]
    base = [*command, "--dest", str(tmp_path / "store"), "--model", str(tiny_run)]
    done = subprocess.run(
        [*base, "--colors", "navy", "--sheet", str(tmp_path / "s.png"), "--rejects", str(tmp_path / "r.csv")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "published variants to" in done.stdout and "left out 5" in done.stdout  # 4 rows, 1 truncated photo
    assert (tmp_path / "s.png").is_file() and len(pd.read_csv(tmp_path / "r.csv")) == 5
    wrong = subprocess.run([*base, "--colors", "navy,blorple", "--json"], capture_output=True, text=True)
    assert wrong.returncode != 0 and wrong.stderr.strip().count("\n") == 0
    assert "'blorple' is not a colour" in wrong.stderr
    again = subprocess.run([*base, "--colors", "navy", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(again.stdout.splitlines()[-1])["unchanged"] == 13  # 11 rows in navy, one in its own two
