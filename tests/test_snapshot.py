"""The snapshot folder: ingest and encode write exactly its documented files, and it reads them back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from productgen.catalog.ingest import ingest
from productgen.conditioning import ConditionConfig, snapshot_conditions
from productgen.dataset import load_training_set, training_fingerprint
from productgen.snapshot import Encoding, Snapshot


def test_ingest_and_encode_write_the_documented_layout(tiny_snapshot: Path) -> None:
    """Every file the docstring names is there, and nothing else outside the cache."""
    snap = Snapshot(tiny_snapshot)
    written = {p.name for p in tiny_snapshot.iterdir() if not p.name.startswith(".")}
    named = {
        p.name
        for p in (
            snap.valid_path,
            snap.rejects_parquet,
            snap.rejects_csv,
            snap.summary_path,
            snap.embeddings_path,
            snap.reads_path,
            snap.encode_path,
        )
    }
    assert written == named
    assert snap.ingested and snap.encoded
    assert snap.num_rows() == len(snap.read_rows(["sku"])) == 280


def test_encoding_names_the_model_and_its_width(tiny_snapshot: Path) -> None:
    """The width is what the model produced, and the condition config is built from it."""
    snap = Snapshot(tiny_snapshot)
    encoding = snap.encoding()
    assert encoding == Encoding(model="sentence-transformers/all-MiniLM-L6-v2", dim=384)
    assert snap.read_embeddings().shape == (280, encoding.dim)
    config = ConditionConfig.for_snapshot(snap, ("description", "rgb"))
    assert config.text_dim == 384 and config.dim == 384 + 3


def test_condition_width_follows_another_models_width(tiny_snapshot: Path, tmp_path: Path) -> None:
    """A snapshot recorded as encoded 512 wide gives 512-wide text parts: nothing assumes 384."""
    copy = Snapshot(tmp_path / "snap")
    shutil.copytree(tiny_snapshot, copy.root)
    copy.write_encoding({**json.loads(copy.encode_path.read_text()), "model": "other", "dim": 512})
    config = ConditionConfig.for_snapshot(copy)
    assert config.text_dim == 512 and config.dim == 3 * 512 + 3


def test_missing_files_are_clear_errors(tmp_path: Path) -> None:
    """A folder that is not a snapshot, or not yet encoded, says which command to run."""
    empty = Snapshot(tmp_path)
    with pytest.raises(ValueError, match="productgen ingest"):
        empty.read_rows()
    with pytest.raises(ValueError, match="productgen ingest"):
        empty.summary()
    with pytest.raises(ValueError, match="productgen ingest"):
        empty.encoding()
    assert empty.read_rejects(5).empty


def test_training_fingerprint_reads_no_embedding(tiny_snapshot: Path, tmp_path: Path) -> None:
    """The fingerprint comes from rows, hashes and photos: it is the same with embeddings gone."""
    with_embeddings = training_fingerprint(tiny_snapshot, 32)
    copy = tmp_path / "snap"
    shutil.copytree(tiny_snapshot, copy)
    Snapshot(copy).embeddings_path.unlink()
    assert training_fingerprint(copy, 32) == with_embeddings
    loaded = load_training_set(tiny_snapshot, 32, ConditionConfig.for_snapshot(Snapshot(tiny_snapshot)))
    assert loaded.fingerprint == with_embeddings
    assert training_fingerprint(tiny_snapshot, 28) != with_embeddings  # the image size is part of it


def test_rows_keep_nulls_as_none(tiny_snapshot: Path) -> None:
    rows = Snapshot(tiny_snapshot).read_rows(["sku", "title", "color", "not-a-column"])
    assert list(rows.columns) == ["sku", "title", "color"]
    assert rows["title"].map(type).eq(str).all()
    assert np.all([v is None or isinstance(v, str) for v in rows["color"]])


def test_embeddings_of_other_rows_are_never_read(tiny_snapshot: Path, tmp_path: Path) -> None:
    """Re-ingested (titles and colours changed) without encode: a clear error, not a stale render."""
    copy = tmp_path / "snap"
    shutil.copytree(tiny_snapshot, copy)
    rows = pd.read_parquet(Snapshot(copy).valid_path)
    rows["title"] = rows["title"] + " in a new colour"
    rows = rows.drop(columns=["content_hash", "source_row"])
    rows.to_parquet(tmp_path / "changed.parquet")
    summary = json.loads(Snapshot(copy).summary_path.read_text())
    ingest(tmp_path / "changed.parquet", copy, image_root=summary["image_root"])
    with pytest.raises(ValueError, match=r"embeddings.parquet describes other rows.*productgen encode"):
        Snapshot(copy).read_embeddings()
    with pytest.raises(ValueError, match="productgen encode"):
        snapshot_conditions(Snapshot(copy), ConditionConfig.for_snapshot(Snapshot(copy)))


def test_streaming_windows_give_the_rows_a_whole_read_gives(tiny_snapshot: Path) -> None:
    """Windows of 37 rows (files written in other batches), positions across their edges."""
    snap = Snapshot(tiny_snapshot)
    positions = np.array([0, 1, 36, 37, 38, 100, 111, 200, 279])
    got, reads, vectors = [], [], []
    for at, window_reads, window_vectors in snap.stream_encoded(positions, ["embedding"], batch_rows=37):
        got.extend(at.tolist())
        reads.append(window_reads)
        vectors.append(window_vectors["embedding"])
    assert got == positions.tolist()
    np.testing.assert_array_equal(np.concatenate(vectors), snap.read_embeddings()[positions])
    whole = snap.read_reads().iloc[positions].reset_index(drop=True)
    assert pd.concat(reads, ignore_index=True).equals(whole)
    with pytest.raises(IndexError, match="row positions"):
        next(snap.stream_encoded(np.array([280]), ["embedding"]))


def test_streamed_rows_and_reads_are_a_whole_read(tiny_snapshot: Path) -> None:
    snap = Snapshot(tiny_snapshot)
    starts, frames = [], []
    for start, frame in snap.stream_reads(["sku", "title", "no-such-column"], batch_rows=37):
        starts.append(start)
        frames.append(frame)
    assert starts == list(range(0, 280, 37))
    whole = pd.concat([snap.read_rows(["sku", "title"]), snap.read_reads()], axis=1)
    assert pd.concat(frames, ignore_index=True).equals(whole)
