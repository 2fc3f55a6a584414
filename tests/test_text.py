"""Encoding descriptions with the real MiniLM model, and the content-hash cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from productgen.catalog.ingest import ingest
from productgen.snapshot import Snapshot
from productgen.text import EncodeConfig, TextEncoder, describe, description_text, encode_snapshot

HEADER = "sku,title,brand,color,size,category\n"
ROWS = [
    "A,Northwind ankle boots in burgundy,Northwind,burgundy,EU 41,ankle boots",
    "B,Red running sneakers,Kestrel,red,EU 38,sneakers",
    "C,Navy wool coat,Halden,navy,M,coat",
    "D,Plain tote,,,,",
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    """The packaged all-MiniLM-L6-v2, loaded once for the module."""
    return TextEncoder(EncodeConfig())


def _snapshot(tmp_path: Path, rows: list[str], name: str = "snap") -> Path:
    (tmp_path / f"{name}.csv").write_text(HEADER + "\n".join(rows) + "\n")
    ingest(tmp_path / f"{name}.csv", tmp_path / name)
    return tmp_path / name


def test_describe_uses_one_template_and_skips_absent_fields() -> None:
    """Fields follow the title as 'name: value' unless the title says them; a bare prompt is its own text."""
    text = describe("Boots", "Northwind", "burgundy", "EU 41", "ankle boots")
    assert text == "Boots | colour: burgundy | category: ankle boots | brand: Northwind | size: EU 41"
    assert describe("red sneakers", None, None, None, None) == "red sneakers"
    said = describe("Northwind burgundy ankle boots, EU 41", "Northwind", "Burgundy", "EU 41", "ankle boots")
    assert said == "Northwind burgundy ankle boots, EU 41"


def test_embeddings_align_with_valid_rows(tmp_path: Path, encoder: TextEncoder) -> None:
    """One float32, unit-length row per valid row, same order; field vectors null when absent."""
    snapshot = _snapshot(tmp_path, ROWS)
    summary = encode_snapshot(snapshot, tmp_path / "cache", EncodeConfig(), encoder=encoder)
    table = pq.read_table(snapshot / "embeddings.parquet")
    valid = pd.read_parquet(snapshot / "valid.parquet")
    assert table.column("sku").to_pylist() == valid["sku"].tolist()
    assert table.column("content_hash").to_pylist() == valid["content_hash"].tolist()
    vectors = Snapshot(snapshot).read_embeddings()
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert table.column("color_embedding").to_pylist()[3] is None  # "Plain tote" names no colour
    assert table.column("category_embedding").to_pylist()[3] is not None  # its category: "bag"
    assert summary.rows == 4 and summary.dim == 384
    # 4 descriptions + 3 colours + 4 categories read (D's from its title), all new
    assert summary.texts == 11 and summary.encoded == 11 and summary.cached == 0
    assert summary.reads["category"] == {**summary.reads["category"], "field": 3, "title": 1}
    assert summary.reads["color"] == {**summary.reads["color"], "field": 3, "none": 1, "low_confidence": 0}


def test_embeddings_carry_meaning(tmp_path: Path, encoder: TextEncoder) -> None:
    """A free-text query lands nearest the row it describes."""
    snapshot = _snapshot(tmp_path, ROWS)
    encode_snapshot(snapshot, tmp_path / "cache", EncodeConfig(), encoder=encoder)
    vectors = Snapshot(snapshot).read_embeddings()
    query = encoder.encode(["red trainers for running"])[0]
    assert int(np.argmax(vectors @ query)) == 1
    colours = Snapshot(snapshot).read_embeddings("color_embedding")
    assert colours[0] @ encoder.encode(["burgundy"])[0] == pytest.approx(1.0, abs=1e-5)


def test_second_run_encodes_only_changed_descriptions(tmp_path: Path, encoder: TextEncoder) -> None:
    """The cache serves unchanged rows; a changed title is the only text sent to the model."""
    cache = tmp_path / "cache"
    first = _snapshot(tmp_path, ROWS, "first")
    encode_snapshot(first, cache, EncodeConfig(), encoder=encoder)
    again = encode_snapshot(first, cache, EncodeConfig(), encoder=encoder)
    assert again.encoded == 0 and again.cached == 11
    np.testing.assert_array_equal(Snapshot(first).read_embeddings(), Snapshot(first).read_embeddings())

    changed = [*ROWS[:2], "C,Navy wool coat with hood,Halden,navy,M,coat", ROWS[3]]
    second = _snapshot(tmp_path, changed, "second")
    summary = encode_snapshot(second, cache, EncodeConfig(), encoder=encoder)
    assert summary.encoded == 1
    a, b = Snapshot(first).read_embeddings(), Snapshot(second).read_embeddings()
    np.testing.assert_array_equal(a[[0, 1, 3]], b[[0, 1, 3]])
    assert not np.allclose(a[2], b[2])


def test_cache_results_equal_fresh_results(tmp_path: Path, encoder: TextEncoder) -> None:
    """What the cache returns is what the model computes; the description names what was read."""
    snapshot = _snapshot(tmp_path, ROWS)
    encode_snapshot(snapshot, tmp_path / "cache", EncodeConfig(), encoder=encoder)
    cached = Snapshot(snapshot).read_embeddings()
    fields = [[v or None for v in r.split(",")[1:]] for r in ROWS]  # title, brand, colour, size, category
    texts = [description_text(title, brand, size, category) for title, brand, _, size, category in fields]
    texts[3] = description_text("Plain tote", None, None, "bag")  # the category read from "tote"
    assert texts[0] == "Northwind ankle boots in | size: EU 41" and texts[3] == "Plain tote | category: bag"
    fresh = encoder.encode(texts)
    np.testing.assert_allclose(cached, fresh, atol=1e-6)


def test_bf16_embeddings_are_float32_ones_within_rounding(tmp_path: Path, encoder: TextEncoder) -> None:
    """amp: the model under bf16 autocast (1.66x faster on a CPU that computes bf16): each embedding
    within rounding of float32's and still of unit length; the summary says which ran."""
    snapshot = _snapshot(tmp_path, ROWS)
    exact = encode_snapshot(snapshot, tmp_path / "float32", EncodeConfig(), encoder=encoder)
    a = Snapshot(snapshot).read_embeddings()
    fast = encode_snapshot(snapshot, tmp_path / "bf16", EncodeConfig(amp=True))
    b = Snapshot(snapshot).read_embeddings()
    assert (exact.bf16, fast.bf16) == (False, True) and fast.encoded == 11
    assert not np.array_equal(a, b) and (a * b).sum(1).min() > 0.999
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-6)
    again = encode_snapshot(snapshot, tmp_path / "bf16", EncodeConfig(amp=True))
    assert again.encoded == 0 and again.bf16 is None  # nothing reached the model
    with pytest.raises(ValueError, match='amp must be true, false or "auto", got 1'):
        EncodeConfig(amp=1)
    result = subprocess.run(
        [sys.executable, "-m", "productgen", "encode", str(snapshot), "--amp", "fast"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --amp must be one of off, auto, on, got 'fast'"


def test_encode_without_ingest_is_a_clear_error(tmp_path: Path) -> None:
    """Encoding a folder that is not a snapshot says what to run first."""
    result = subprocess.run(
        [sys.executable, "-m", "productgen", "encode", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {tmp_path}: not a snapshot with valid rows (no valid.parquet); "
        f"run `productgen ingest CATALOG --out {tmp_path}` first"
    )


@pytest.mark.slow
def test_unknown_model_is_a_clear_error(tmp_path: Path) -> None:
    """A model that is neither packaged nor a folder fails in one line, without a traceback."""
    snapshot = _snapshot(tmp_path, ROWS)
    missing = str(tmp_path / "no-such-model")
    args = ["encode", str(snapshot), "--model", missing, "--cache", str(tmp_path / "cache")]
    result = subprocess.run(
        [sys.executable, "-m", "productgen", *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-model" in lines[0] and "Traceback" not in result.stderr
