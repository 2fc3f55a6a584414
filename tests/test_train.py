"""Training: both model families, checkpoints that round-trip, bit-exact resume, safe loading."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from productgen.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from productgen.devices import bf16_native, uses_bf16
from productgen.losses import Batch, GANLoss, LossWeights, VAELoss
from productgen.models import Discriminator, Generator, ModelConfig, VAEEncoder
from productgen.models.augment import diff_augment
from productgen.render import RenderPipeline, sample_sheet
from productgen.runs import load_generator
from productgen.train import PRESETS, PROGRESS_EVERY, Progress, lr_factor, train, train_config

TINY = {"batch_size": 16, "g_ch": 8, "d_ch": 8, "z_dim": 16, "cond_dim": 32, "sample_every": 1000,
        "checkpoint_every": 1000}  # fmt: skip


def _tiny(max_steps: int, **overrides: object):
    return dataclasses.replace(
        train_config("cpu-demo", **{**TINY, **overrides}), max_steps=max_steps, max_minutes=None
    )


def _batch(config: ModelConfig, b: int = 8) -> Batch:
    s = config.image_size
    return Batch(
        images=torch.rand(b, 3, s, s) * 2 - 1,
        conditions=torch.randn(b, config.cond_in),
        labels={"category": torch.tensor([0, 1, -1, 2, 0, 1, 2, 0][:b])},
    )


@pytest.mark.parametrize("size", [32, 64])
def test_networks_have_the_documented_shapes(size: int) -> None:
    """G makes (B, 3, S, S) in [-1, 1]; D scores (B,) with aux logits; the VAE encoder gives (B, z)."""
    config = ModelConfig(
        image_size=size, cond_in=40, z_dim=16, cond_dim=24, g_ch=8, d_ch=8, aux_classes={"category": 3}
    )
    G, D, E = Generator(config), Discriminator(config), VAEEncoder(config)
    x = G(torch.randn(4, 16), torch.randn(4, 40))
    assert x.shape == (4, 3, size, size) and x.abs().max() <= 1
    score, aux = D(x, torch.randn(4, 40))
    assert score.shape == (4,) and aux["category"].shape == (4, 3)
    mu, logvar = E(x, torch.randn(4, 40))
    assert mu.shape == logvar.shape == (4, 16)


def test_image_size_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        ModelConfig(image_size=48)


@pytest.mark.parametrize("family", ["cgan", "cvae"])
def test_one_step_gives_finite_losses_and_moves_the_weights(family: str) -> None:
    """A training step of either family produces finite losses and changes the generator."""
    torch.manual_seed(0)
    config = ModelConfig(
        family=family, cond_in=40, z_dim=16, cond_dim=24, g_ch=8, d_ch=8, aux_classes={"category": 3}
    )
    G = Generator(config)
    before = [p.detach().clone() for p in G.parameters()]
    if family == "cgan":
        D = Discriminator(config)
        loss = GANLoss(
            G, D, torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters()), LossWeights()
        )
    else:
        E = VAEEncoder(config)
        loss = VAELoss(G, E, torch.optim.Adam([*G.parameters(), *E.parameters()]), LossWeights())
    metrics = loss.step(_batch(config))
    assert metrics and all(np.isfinite(float(v)) for v in metrics.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, G.parameters(), strict=True))


def test_diff_augment_moves_pixels_but_never_changes_colour() -> None:
    """Every augmented pixel is an input pixel, the white border or the cut-out: no new colours."""
    torch.manual_seed(0)
    palette = torch.tensor([[0.8, -0.6, -0.4], [-0.9, -0.7, 0.2]])
    x = palette[torch.randint(2, (4, 16, 16))].permute(0, 3, 1, 2)
    y = diff_augment(x)
    allowed = torch.cat([palette, torch.ones(1, 3), torch.zeros(1, 3)])
    pixels = y.permute(0, 2, 3, 1).reshape(-1, 3)
    assert ((pixels[:, None, :] - allowed[None]).abs().sum(-1).min(1).values < 1e-6).all()
    assert not torch.equal(x, y)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    """Tensors and metadata come back exactly."""
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    save_checkpoint(tmp_path / "c.safetensors", tensors, {"step": 7, "nested": {"x": [1, 2]}})
    loaded, meta = load_checkpoint(tmp_path / "c.safetensors")
    assert meta == {"step": 7, "nested": {"x": [1, 2]}}
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())


def test_a_pickle_offered_as_checkpoint_is_refused(tmp_path: Path) -> None:
    """torch.save files (pickles) are never loaded; the error says why."""
    path = tmp_path / "evil.safetensors"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match=r"pickle file .* never unpickles"):
        load_checkpoint(path)
    legacy = tmp_path / "legacy.safetensors"
    torch.save({"weights": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(legacy)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    latest = sorted((run / "checkpoints").glob("*.safetensors"))[-1]
    return load_checkpoint(latest)[0]


@pytest.mark.parametrize(("family", "warmdown"), [("cgan", 0.0), ("cvae", 0.0), ("cvae", 0.5)])
def test_resume_is_bit_for_bit(tiny_snapshot: Path, tmp_path: Path, family: str, warmdown: float) -> None:
    """6 steps in one go equal 3 steps, stopped, then a resume for 3 more: every tensor, exactly
    (the update guard's state too); a learning-rate warm-down over the 6 steps resumes where it was."""
    settings = {"family": family, "lr_warmdown": warmdown}
    straight = train(tiny_snapshot, tmp_path / "straight", _tiny(6, **settings))
    asked = iter(range(100))  # asked once before each step: stop before the fourth
    stopped = train(
        tiny_snapshot, tmp_path / "split", _tiny(6, **settings), should_stop=lambda: next(asked) >= 3
    )
    assert stopped.step == 3
    resumed = train(tiny_snapshot, tmp_path / "split", _tiny(6, **settings), resume=True)
    assert straight.step == resumed.step == 6
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []
    if family == "cvae":  # its update guard (productgen.guard) counted on from the checkpoint's 3
        assert b["guard.opt.seen"].item() == 6
        assert resumed.metrics["clipped_updates"] == 0 and isinstance(resumed.metrics["clipped_updates"], int)
    latest = sorted((tmp_path / "split" / "checkpoints").glob("*.safetensors"))[-1]
    (group,) = load_checkpoint(latest)[1]["param_groups"]["opt_g" if family == "cgan" else "opt"]
    # the last update (step 6 of 6: 5/6 of the budget spent) ran at a third of the rate
    assert group["lr"] == pytest.approx(group["initial_lr"] * (1 / 3 if warmdown else 1))


def test_the_warm_down_falls_in_a_straight_line_to_zero() -> None:
    assert [lr_factor(used, 0.4) for used in (0.0, 0.6, 0.8, 1.0)] == pytest.approx([1, 1, 0.5, 0])
    assert lr_factor(0.99, 0.0) == 1.0
    with pytest.raises(ValueError, match="lr_warmdown must be a share of the budget from 0 to 1"):
        lr_factor(0.0, 1.5)


def test_run_folder_is_self_describing(tiny_snapshot: Path, tmp_path: Path) -> None:
    """run.json names config, step, text model, embedding size, image size, data fingerprint, metrics."""
    result = train(tiny_snapshot, tmp_path / "run", _tiny(4, family="cgan"))
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["step"] == 4 and run["train_config"]["family"] == "cgan"
    assert run["text_model"] == "sentence-transformers/all-MiniLM-L6-v2" and run["embedding_dim"] == 384
    assert run["image_size"] == 32 and len(run["data_fingerprint"]) == 16 and run["metrics"]
    assert run["train_rows"] == 240  # the holdout split is not trained on
    sheet = Image.open(result.sample_sheet)
    assert sheet.size[0] > 500 and sheet.size[1] > 500  # 10 categories x 4 colours x 2 draws
    with pytest.raises(ValueError, match="already holds a run"):
        train(tiny_snapshot, tmp_path / "run", _tiny(4))


def test_a_term_computed_on_some_steps_only_is_reported_as_last_computed(
    tiny_snapshot: Path, tmp_path: Path
) -> None:
    """cpu-demo's classifier runs on steps 0, 4 and 8 of 10, and no progress read nor the end of the
    run falls on one of them: its terms still reach the progress bar and run.json."""
    seen: list[Progress] = []
    config = _tiny(10, family="cvae")
    assert config.weights.classifier_every == 4 and PROGRESS_EVERY == 10
    result = train(tiny_snapshot, tmp_path / "run", config, on_progress=seen.append)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [p.step for p in seen] == [10]
    for metrics in (seen[0].metrics, result.metrics, run["metrics"]):
        assert {"c_aux", "g_aux", "recon", "kl"} <= metrics.keys() and metrics["c_aux"] > 0
    shown = seen[0].losses_text(", ")  # what the progress bar and the flow's log print
    assert f"recon {run['metrics']['recon']:.3f}, " in shown and shown.endswith("clipped_updates 0")


def test_corrupt_checkpoint_is_a_clear_error_and_the_previous_stays(
    tiny_snapshot: Path, tmp_path: Path
) -> None:
    """A truncated latest checkpoint stops the resume with a message naming the intact previous one."""
    run = tmp_path / "run"
    train(tiny_snapshot, run, _tiny(4, checkpoint_every=2))
    first, latest = sorted((run / "checkpoints").glob("*.safetensors"))
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    with pytest.raises(CheckpointError) as info:
        train(tiny_snapshot, run, _tiny(6), resume=True)
    assert latest.name in str(info.value) and f"previous checkpoint {first.name} is intact" in str(info.value)
    assert load_checkpoint(first)[1]["step"] == 2


def test_a_checkpoint_with_a_bad_guard_state_is_refused(tiny_snapshot: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_snapshot, run, _tiny(2, family="cvae"))
    (latest,) = (run / "checkpoints").glob("*.safetensors")
    tensors, meta = load_checkpoint(latest)
    save_checkpoint(latest, {**tensors, "guard.opt.average": torch.tensor(float("nan"))}, meta)
    with pytest.raises(CheckpointError, match=rf"{latest.name}: the update guard's state must be"):
        train(tiny_snapshot, run, _tiny(4, family="cvae"), resume=True)


@pytest.mark.parametrize(
    ("family", "optimizers"), [("cvae", {"opt", "opt_c", "opt_p"}), ("cgan", {"opt_g", "opt_d"})]
)
def test_every_optimizer_takes_the_runs_betas(
    tiny_snapshot: Path, tmp_path: Path, family: str, optimizers: set[str]
) -> None:
    """`--set beta1=...` reaches every optimizer of the run, the cVAE's too (its own default: 0.5),
    its classifier's and its patch discriminator's among them."""
    assert train_config("cpu-demo").beta1 == 0.5 and train_config("cpu-demo", family="cgan").beta1 == 0.0
    train(tiny_snapshot, tmp_path / "run", _tiny(1, family=family, beta1=0.9, beta2=0.99))
    (latest,) = (tmp_path / "run" / "checkpoints").glob("*.safetensors")
    groups = load_checkpoint(latest)[1]["param_groups"]
    assert set(groups) == optimizers
    assert {tuple(g["betas"]) for gs in groups.values() for g in gs} == {(0.9, 0.99)}


def test_presets_and_overrides_fail_loudly_when_unknown() -> None:
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        train_config("fast")
    with pytest.raises(ValueError, match="unknown training setting"):
        train_config("cpu-demo", batchsize=3)
    assert train_config("gpu").amp is True and train_config("cpu-demo").amp == "auto"
    # "auto": bf16 only where the hardware computes it (elsewhere a CPU emulates it, slower)
    cpu = torch.device("cpu")
    assert uses_bf16(train_config("cpu-demo").amp, cpu) == bf16_native(cpu)
    assert not uses_bf16(train_config("cpu-demo", amp=False).amp, cpu)
    assert not bf16_native(torch.device("meta"))
    with pytest.raises(ValueError, match='amp must be true, false or "auto"'):
        uses_bf16(train_config("cpu-demo", amp="yes").amp, cpu)
    assert train_config("cpu-demo").family == "cvae" and train_config("gpu").family == "vaegan"
    assert train_config("cpu-demo", family="cgan").family == "cgan"
    assert not train_config("gpu", family="cvae").cond_augment


def test_a_presets_settings_for_its_own_family_hold_only_while_the_run_keeps_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own = {"pixel_noise": True, "weights": {"recon_adv": 0.5, "adv_start": 1000}}
    monkeypatch.setitem(PRESETS, "mine", dict(PRESETS["cpu-demo"], max_minutes=30.0, own_family=own))
    mine = train_config("mine")
    assert mine.family == "cvae" and mine.pixel_noise and mine.max_minutes == 30
    assert (mine.weights.recon_adv, mine.weights.adv_start) == (0.5, 1000)
    demo = train_config("cpu-demo").weights  # the cVAE's other weights, kept
    assert (mine.weights.kl_vae, mine.weights.prior_aux) == (demo.kl_vae, demo.prior_aux)
    # another family: its own defaults, with the preset's budget and widths
    gan = train_config("mine", family="cgan")
    assert not gan.pixel_noise and gan.weights == train_config("cpu-demo", family="cgan").weights
    assert (gan.max_minutes, gan.g_ch) == (30, mine.g_ch)
    # overrides win, weight by weight; None overrides (a flow's empty budget) keep the preset's
    given = train_config("mine", weights={"recon_adv": 0.25}, max_minutes=None)
    assert (given.weights.recon_adv, given.weights.adv_start, given.max_minutes) == (0.25, 1000, 30)
    assert train_config("mine", loss="nonsaturating").weights.recon_adv == 0.5
    # the shipped CPU presets: the cVAE judging its reconstructions' patches from step 500, for
    # 10 or 30 minutes, its classifier every 4th step in the 10; their other families have none
    quality = train_config("cpu-quality")
    assert (
        (demo.patch_adv, demo.adv_start)
        == (quality.weights.patch_adv, quality.weights.adv_start)
        == (0.5, 500)
    )
    assert (demo.classifier_every, quality.weights.classifier_every) == (4, 1)
    assert (train_config("cpu-demo").max_minutes, quality.max_minutes) == (10, 30)
    for preset in ("cpu-demo", "cpu-quality"):
        other = train_config(preset, family="vaegan").weights
        assert (other.patch_adv, other.classifier_every) == (0.0, 1)


def test_sample_renders_free_text_deterministically(
    tiny_snapshot: Path, text_encoder, tmp_path: Path
) -> None:
    """`sample` reads colour and category from free text and renders the same pixels twice."""
    train(tiny_snapshot, tmp_path / "run", _tiny(2))
    texts = ["burgundy ankle boots", "a scarlet tote bag"]
    read = sample_sheet(RenderPipeline.from_run(tmp_path / "run"), texts, n=3, out=tmp_path / "a.png")
    sample_sheet(RenderPipeline.from_run(tmp_path / "run"), texts, n=3, out=tmp_path / "b.png")
    assert (read[0]["color"], read[0]["category"]) == ("burgundy", "ankle boots")
    assert read[1]["color"] == "scarlet" and read[1]["category"] == "bag"
    assert read[0]["color_source"] == read[0]["category_source"] == "title"
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert load_generator(tmp_path / "run").generator.training is False


@pytest.mark.slow
def test_cli_trains_resumes_and_samples(tiny_snapshot: Path, tmp_path: Path) -> None:
    """`productgen train` then `train --resume` then `sample`, as a user runs them."""
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "productgen", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    run = str(tmp_path / "run")
    tiny = [f"--set={k}={v}" for k, v in TINY.items()]
    first = cli("train", str(tiny_snapshot), "--out", run, "--max-steps", "2", "--json", *tiny)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout.strip().splitlines()[-1])["step"] == 2
    again = cli("train", str(tiny_snapshot), "--out", run, "--max-steps", "3", "--resume", "--json", *tiny)
    assert json.loads(again.stdout.strip().splitlines()[-1])["step"] == 3, again.stderr
    sample = cli("sample", run, "--text", "navy coat", "-n", "2", "--out", str(tmp_path / "s.png"))
    assert sample.returncode == 0, sample.stderr
    assert (
        "colour navy #01153e (title), category coat (title)" in sample.stdout
        and (tmp_path / "s.png").is_file()
    )
    bad = cli("train", str(tiny_snapshot), "--out", str(tmp_path / "r2"), "--set", "batchsize=3")
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown training setting(s) batchsize")
