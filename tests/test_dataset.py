"""Training data: photos decoded once into the snapshot's cache, reused while the rows are the same."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

import productgen.dataset as dataset
from productgen.catalog import build_demo_catalog
from productgen.catalog.ingest import ingest
from productgen.conditioning import ConditionConfig
from productgen.snapshot import Snapshot
from productgen.text import EncodeConfig, encode_snapshot
from tests.conftest import train_tiny


@pytest.fixture
def snapshot_copy(tiny_snapshot: Path, tmp_path: Path) -> Path:
    """The tiny snapshot without its cache: the first load decodes."""
    copy = tmp_path / "snap"
    shutil.copytree(tiny_snapshot, copy, ignore=shutil.ignore_patterns(".cache"))
    return copy


def test_photos_are_decoded_once_then_read_from_the_cache(
    snapshot_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ConditionConfig.for_snapshot(Snapshot(snapshot_copy))
    first = dataset.load_training_set(snapshot_copy, 32, config)
    cached = list((snapshot_copy / ".cache").glob("images-32px-*.safetensors"))
    assert len(cached) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("photos decoded again although the cache holds them")

    monkeypatch.setattr(dataset, "decode_photos", no_decoding)
    second = dataset.load_training_set(snapshot_copy, 32, config)
    assert torch.equal(first.images, second.images) and first.fingerprint == second.fingerprint


def test_a_damaged_photo_cache_is_made_again(snapshot_copy: Path) -> None:
    first = dataset.load_training_set(snapshot_copy, 32, None)
    (cache,) = (snapshot_copy / ".cache").glob("images-32px-*.safetensors")
    cache.write_bytes(b"not a cache")
    again = dataset.load_training_set(snapshot_copy, 32, None)
    assert torch.equal(first.images, again.images) and cache.stat().st_size > 1000


def test_training_rows_exclude_holdout_and_carry_labels(snapshot_copy: Path) -> None:
    config = ConditionConfig.for_snapshot(Snapshot(snapshot_copy))
    train = dataset.load_training_set(snapshot_copy, 32, config, exclude_split="holdout")
    holdout = dataset.load_training_set(snapshot_copy, 32, config, exclude_split="train")
    assert (len(train), len(holdout)) == (240, 40)
    assert train.images.shape == (240, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.conditions.shape == (240, config.dim)
    assert set(train.labels) == {"category", "color"} and (train.labels["category"] >= 0).all()
    # each category's embedding in the vocabulary is that category's own text embedding
    snap = Snapshot(snapshot_copy)
    rows = snap.read_rows(["category"])
    first = rows.index[rows["category"] == train.vocabulary.categories[0]][0]
    expected = snap.read_embeddings("category_embedding")[first]
    assert torch.allclose(
        torch.from_numpy(train.vocabulary.category_embeddings[0]), torch.from_numpy(expected)
    )


def test_without_conditioning_only_photos_and_labels_load(snapshot_copy: Path) -> None:
    """The judge needs no condition vectors: none are read."""
    Snapshot(snapshot_copy).embeddings_path.unlink()
    photos = dataset.load_training_set(snapshot_copy, 32, None)
    assert photos.conditions.shape == (240, 0) and len(photos.labels["color"]) == 240


def test_changed_rows_change_the_fingerprint_and_missing_photos_are_counted(
    small_demo, text_encoder, tmp_path: Path
) -> None:
    frame = pd.read_parquet(small_demo.catalog_parquet)
    ingest(small_demo.catalog_parquet, tmp_path / "a")
    frame.loc[0, "title"] = frame.loc[0, "title"] + " (new)"
    frame.loc[1, "image"] = "images/no-such-photo.png"
    frame.to_parquet(tmp_path / "changed.parquet")
    ingest(tmp_path / "changed.parquet", tmp_path / "b", image_root=str(small_demo.directory))
    for name in ("a", "b"):  # the fingerprint covers what was read from the rows
        encode_snapshot(tmp_path / name, tmp_path / "cache", EncodeConfig(), encoder=text_encoder)
    a = dataset.training_fingerprint(tmp_path / "a", 32)
    b = dataset.training_fingerprint(tmp_path / "b", 32)
    assert a != b
    photos = dataset.load_training_set(tmp_path / "b", 32, None)
    holdout_missing = frame.loc[1, "split"] == "holdout"
    assert photos.missing_images == (0 if holdout_missing else 1)


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height (what a decompression bomb looks like)."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # the chunk's CRC
    return bytes(data)


def test_bad_photos_are_skipped_with_reasons_and_training_goes_on(
    fashion_mnist, text_encoder, tmp_path: Path
) -> None:
    """Truncated, not an image, a link out of the folder, a linked folder, a bomb: skipped, named."""
    demo = build_demo_catalog(fashion_mnist, tmp_path / "demo", limit=60, seed=0)
    frame = pd.read_parquet(demo.catalog_parquet)
    train_rows = frame.index[frame["split"] == "train"][:5]
    images = demo.directory
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(images / frame.loc[train_rows[3], "image"], outside / "x.png")
    first = images / frame.loc[train_rows[0], "image"]
    first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])  # truncated
    (images / frame.loc[train_rows[1], "image"]).write_text("not an image\n")
    target = images / frame.loc[train_rows[2], "image"]
    target.unlink()
    target.symlink_to("/etc/passwd")
    (images / "images" / "linked").symlink_to(outside, target_is_directory=True)
    frame.loc[train_rows[3], "image"] = "images/linked/x.png"
    (images / frame.loc[train_rows[4], "image"]).write_bytes(_png_declaring(9_000, 9_000))
    frame.to_parquet(demo.catalog_parquet)
    ingest(demo.catalog_parquet, tmp_path / "snap")
    encode_snapshot(tmp_path / "snap", tmp_path / "cache", EncodeConfig(), encoder=text_encoder)

    data = dataset.load_training_set(tmp_path / "snap", 32, None)
    skipped = data.skipped.set_index("sku")["reason"]
    skus = frame.loc[train_rows, "sku"].tolist()
    assert sorted(skipped.index) == sorted(skus)
    assert "does not decode" in skipped[skus[0]] and "does not decode" in skipped[skus[1]]
    assert "symbolic link" in skipped[skus[2]] and "symbolic link" in skipped[skus[3]]
    assert "declares 9000x9000 pixels" in skipped[skus[4]]
    assert len(data) == (frame["split"] == "train").sum() - 5
    written = pd.read_csv(Snapshot(tmp_path / "snap").photo_rejects)
    assert sorted(written["sku"]) == sorted(skus)
    again = dataset.load_training_set(tmp_path / "snap", 32, None)  # from the photo cache
    assert len(again) == len(data)
    assert again.skipped.set_index("sku")["reason"].to_dict() == skipped.to_dict()  # reasons kept

    run = train_tiny(tmp_path / "snap", tmp_path / "run", steps=2)
    assert json.loads((run / "run.json").read_text())["skipped_photos"] == 5
