"""The run folder's model is untrusted input: metadata and tensor shapes are checked before building."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from productgen.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from productgen.runs import RunFolder, load_generator
from tests.conftest import train_tiny


def _tampered(tiny_run: Path, target: Path, change) -> Path:
    """A copy of the run whose model metadata (or tensors) `change` rewrote in place."""
    shutil.copytree(tiny_run, target)
    model = RunFolder(target).model
    tensors, meta = load_checkpoint(model)
    change(tensors, meta)
    save_checkpoint(model, tensors, meta)
    return target


def _set(path: str, value):
    def change(tensors, meta) -> None:
        *parents, last = path.split(".")
        node = meta
        for key in parents:
            node = node[key]
        node[last] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("model_config.g_ch", 200_000), "g_ch must be an integer from 1 to 1024"),
        (_set("model_config.z_dim", 10**9), "z_dim must be an integer"),
        (_set("model_config.image_size", 4096), "image_size must be an integer from 8 to 1024"),
        (_set("model_config.image_size", -32), "image_size must be an integer"),
        (_set("model_config.image_size", 48), "power of two"),
        (_set("model_config.extra", 1), "unknown keys"),
        (_set("model_config", [1, 2]), "model_config must be a JSON object"),
        (lambda t, m: m.pop("vocabulary"), "vocabulary.categories must be a list"),
        (_set("embedding_dim", 512), "conditions are"),
        (_set("conditioning", ["description", "texture"]), "conditioning parts must be among"),
        (_set("model_config.g_ch", 16), "tensors do not match"),  # weights were trained at width 8
        (lambda t, m: t.pop(next(k for k in t if k.startswith("G_ema."))), "tensors do not match"),
    ],
)
def test_hostile_model_metadata_is_refused_before_building(
    tiny_run: Path, tmp_path: Path, change, message: str
) -> None:
    run = _tampered(tiny_run, tmp_path / "run", change)
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match=message):
        load_generator(run)
    assert time.perf_counter() - started < 5  # refused from the header, nothing large was built


def test_a_huge_network_described_in_bounds_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    """Each setting in range, the whole too large: sized on the meta device, never allocated."""
    huge = {"g_ch": 1024, "image_size": 1024}
    run = _tampered(tiny_run, tmp_path / "run", lambda t, m: m["model_config"].update(huge))
    with pytest.raises(CheckpointError, match="over 200,000,000 parameters"):
        load_generator(run)


def test_metadata_that_is_a_json_list_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_run, tmp_path / "run")
    model = RunFolder(tmp_path / "run").model
    tensors, _ = load_checkpoint(model)
    save_file(tensors, str(model), metadata={"productgen": json.dumps([1, 2, 3])})
    with pytest.raises(CheckpointError, match="not a JSON object"):
        load_generator(tmp_path / "run")


def test_an_untouched_model_loads(tiny_run: Path) -> None:
    trained = load_generator(tiny_run)
    assert len(trained.version) == 12 and trained.conditioning.dim == trained.generator.config.cond_in


def test_a_model_from_before_the_latent_prior_loads_drawing_from_n01(tiny_run: Path, tmp_path: Path) -> None:
    """A cVAE saved before its renders drew from a fitted prior (or from one given the row, whose
    setting its model_config lacks) loads, and draws from N(0, I) as it did."""
    fitted = load_generator(tiny_run).generator.latent
    assert fitted.mean.abs().sum() > 0  # training fitted it

    def drop_prior(tensors, meta) -> None:
        for key in [k for k in tensors if k.startswith(("G_ema.latent.", "G_ema.prior."))]:
            del tensors[key]
        del meta["model_config"]["prior_components"]

    older = load_generator(_tampered(tiny_run, tmp_path / "older", drop_prior))
    assert not older.generator.latent.mean.any()
    assert torch.equal(older.generator.latent.scale, torch.eye(len(fitted.mean)))
    z, cond = torch.randn(2, len(fitted.mean)), torch.zeros(2, older.generator.config.cond_in)
    assert torch.equal(older.generator(z, cond), older.generator.decode(z, cond))


def test_a_run_killed_while_writing_its_first_checkpoint_can_start_again(
    tiny_snapshot: Path, tmp_path: Path
) -> None:
    """Only a temporary file in checkpoints/: not 'already holds a run'; the leftover is removed."""
    run = RunFolder(tmp_path / "run")
    partial = run.root / "checkpoints" / ".step-0000020.safetensors.k1ll3d.tmp"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\0" * 1000)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train_tiny(tiny_snapshot, run.root, steps=2, resume=True)
    train_tiny(tiny_snapshot, run.root, steps=2)
    assert not partial.exists() and [p.name for p in run.checkpoints()] == ["step-0000002.safetensors"]
