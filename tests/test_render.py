"""The render pipeline: one batched call from rows' conditions or prompts to pixels, deterministic."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from productgen.render import RenderPipeline, noise_seed, sample_sheet
from productgen.snapshot import Snapshot


@pytest.fixture(scope="module")
def pipeline(tiny_run: Path, text_encoder) -> RenderPipeline:
    return RenderPipeline.from_run(tiny_run, encoder=text_encoder)


def test_an_image_depends_only_on_its_own_row(pipeline: RenderPipeline, tiny_snapshot: Path) -> None:
    """The same (sku, model) gives the same pixels alone, in any batch, at any batch size."""
    conditions, rows = pipeline.snapshot_conditions(tiny_snapshot)
    seeds = pipeline.seeds(rows["sku"].tolist())
    pipeline.batch_size = 64
    together = pipeline(conditions=conditions, seeds=seeds).images
    assert together.shape == (280, 32, 32, 3) and together.dtype == np.uint8
    pipeline.batch_size = 7
    order = np.random.default_rng(0).permutation(280)
    shuffled = pipeline(conditions=conditions[order], seeds=[seeds[i] for i in order]).images
    np.testing.assert_array_equal(shuffled, together[order])
    alone = pipeline(conditions=conditions[5:6], seeds=seeds[5:6]).images
    np.testing.assert_array_equal(alone[0], together[5])
    assert seeds[0] == noise_seed(rows["sku"][0], pipeline.version)
    # other noise, other image: the seed is used
    other = pipeline(conditions=conditions[5:6], seeds=[seeds[5] + 1]).images
    assert not np.array_equal(other[0], together[5])


def test_prompts_are_read_and_repeated_prompts_agree(pipeline: RenderPipeline) -> None:
    texts = ["a red pullover", "navy sneakers", "a red pullover"]
    output = pipeline(prompts=texts, seeds=[1, 2, 1])
    assert output.images.shape == (3, 32, 32, 3)
    assert output.read[0] == output.read[2] and output.read[0]["color"] == "red"
    assert output.read[1]["color"] == "navy"
    np.testing.assert_array_equal(output.images[0], output.images[2])
    one = pipeline(prompts=texts[:1], seeds=[1])
    np.testing.assert_array_equal(one.images[0], output.images[0])


def test_bad_calls_are_clear_errors(pipeline: RenderPipeline) -> None:
    with pytest.raises(ValueError, match="one seed per image"):
        pipeline(prompts=["a coat"], seeds=[1, 2])
    with pytest.raises(ValueError, match="not both or neither"):
        pipeline(seeds=[1])
    with pytest.raises(ValueError, match=r"the model takes \(N, "):
        pipeline(conditions=np.zeros((1, 5), np.float32), seeds=[1])


def test_a_snapshot_encoded_by_another_text_model_is_refused(
    pipeline: RenderPipeline, tiny_snapshot: Path, tmp_path: Path
) -> None:
    """Rows embedded by another model would render as garbage: say so and how to fix it."""
    copy = Snapshot(tmp_path / "snap")
    shutil.copytree(tiny_snapshot, copy.root)
    copy.write_encoding({**json.loads(copy.encode_path.read_text()), "model": "someone/else"})
    with pytest.raises(ValueError, match=r"encoded with someone/else.*productgen encode"):
        pipeline.snapshot_conditions(copy.root)


def test_sample_sheet_is_deterministic(pipeline: RenderPipeline, tmp_path: Path) -> None:
    texts = ["a red pullover", "a black bag"]
    read = sample_sheet(pipeline, texts, n=3, out=tmp_path / "a.png")
    sample_sheet(pipeline, texts, n=3, out=tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert [r["color"] for r in read] == ["red", "black"]
