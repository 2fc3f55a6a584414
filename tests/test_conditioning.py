"""Condition vectors: the same parts in the same places for catalog rows and free-text prompts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from productgen.catalog.ingest import ingest
from productgen.catalog.schema import PALETTE
from productgen.colors import colour_rgb, find_colour, nearest_name, rgb_to_unit
from productgen.conditioning import ConditionConfig, Conditioner, Vocabulary, snapshot_conditions
from productgen.snapshot import Snapshot
from productgen.text import EncodeConfig, encode_snapshot


def test_parts_have_fixed_widths_and_places() -> None:
    config = ConditionConfig(parts=("description", "rgb", "category"), text_dim=8)
    assert config.dim == 8 + 3 + 8
    assert (config.span("description"), config.span("rgb"), config.span("category")) == (
        slice(0, 8),
        slice(8, 11),
        slice(11, 19),
    )
    with pytest.raises(ValueError, match="conditioning parts must be among"):
        ConditionConfig(parts=("description", "texture"))


def test_snapshot_conditions_hold_the_rows_embeddings_and_colours(tiny_snapshot: Path) -> None:
    snap = Snapshot(tiny_snapshot)
    config = ConditionConfig.for_snapshot(snap)
    conditions, rows, vocabulary = snapshot_conditions(snap, config)
    assert conditions.shape == (280, config.dim) and conditions.dtype == np.float32
    np.testing.assert_array_equal(conditions[:, config.span("description")], snap.read_embeddings())
    np.testing.assert_array_equal(
        conditions[:, config.span("color")], snap.read_embeddings("color_embedding")
    )
    # the colour field's RGB from the colour-name table (the demo's colours are all named there)
    assert set(rows["color"]) <= set(PALETTE) and (rows["color"] == rows["color_field"]).all()
    assert (rows["category"] == rows["category_field"]).all() and set(rows["color_source"]) == {"field"}
    assert vocabulary.colors == sorted(set(rows["color"]))
    expected = np.stack([rgb_to_unit(colour_rgb(c)) for c in rows["color"]])
    np.testing.assert_allclose(conditions[:, config.span("rgb")], expected)


def test_title_only_catalog_gets_conditions_of_the_right_shape(text_encoder, tmp_path: Path) -> None:
    """A `sku,title` catalog encodes and conditions (no field column at all); colour from the title."""
    (tmp_path / "catalog.csv").write_text(
        "sku,title\nA-1,Navy blue wool coat\nA-2,Slim fit trousers\nA-3,#7b1f3a silk dress\n"
    )
    ingest(tmp_path / "catalog.csv", tmp_path / "snap")
    encode_snapshot(tmp_path / "snap", tmp_path / "cache", EncodeConfig(), encoder=text_encoder)
    snap = Snapshot(tmp_path / "snap")
    config = ConditionConfig.for_snapshot(snap)
    conditions, rows, _ = snapshot_conditions(snap, config)
    assert rows["category"].tolist() == ["coat", "trousers", "dress"]  # read from the titles
    assert conditions.shape == (3, config.dim) and np.isfinite(conditions).all()
    rgb = conditions[:, config.span("rgb")]
    np.testing.assert_allclose(rgb[0], rgb_to_unit(colour_rgb("navy blue")))
    np.testing.assert_allclose(rgb[1], 0.0)  # "slim fit trousers" names no colour
    np.testing.assert_allclose(rgb[2], rgb_to_unit((0x7B, 0x1F, 0x3A)))


def test_prompts_read_colour_and_category_through_the_vocabulary(text_encoder) -> None:
    """An unseen colour word speaks through the nearest catalog colour; its exact RGB is kept."""
    categories, colours = ["coat", "sneakers", "dress"], ["red", "navy", "green"]
    vocabulary = Vocabulary(
        categories,
        colours,
        text_encoder.encode(categories),
        text_encoder.encode(colours),
        np.array([colour_rgb(c) for c in colours], np.uint8),
    )
    config = ConditionConfig(text_dim=384)
    conditioner = Conditioner(config, vocabulary)
    conditions, read = conditioner.for_prompts(
        ["a scarlet parka for winter", "running trainers"], text_encoder
    )
    assert conditions.shape == (2, config.dim)
    assert read[["color", "category"]].values.tolist() == [["scarlet", "coat"], [None, "sneakers"]]
    assert read["color_source"].tolist() == ["title", "none"]
    np.testing.assert_allclose(
        conditions[0, config.span("category")], text_encoder.encode(["coat"])[0], atol=1e-6
    )
    np.testing.assert_allclose(
        conditions[0, config.span("color")], text_encoder.encode(["red"])[0], atol=1e-6
    )
    np.testing.assert_allclose(conditions[0, config.span("rgb")], rgb_to_unit(colour_rgb("scarlet")))
    np.testing.assert_allclose(conditions[1, config.span("color")], 0.0)


def test_colour_names_hex_codes_and_nearest() -> None:
    assert colour_rgb("Navy Blue") == colour_rgb("navy-blue") is not None
    assert colour_rgb("#fff") == (255, 255, 255) and colour_rgb("not a colour") is None
    assert find_colour("light navy blue sneakers")[0] == "light navy blue"  # longest name first
    assert find_colour("heather grey hoodie")[0] == "grey"  # the last of adjacent colour words
    assert find_colour("a #00ff00 bag with red straps")[0] == "#00ff00"  # a hex code wins
    assert find_colour("canvas tote") is None
    assert nearest_name((250, 10, 10), {"red": (220, 30, 40), "blue": (40, 110, 230)}) == "red"
