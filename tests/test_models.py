"""The model registry: every family trains, checkpoints, resumes bit for bit and renders the same
pixels twice; the loss options and StyleGAN's parts do what they say."""

from __future__ import annotations

import copy
import dataclasses
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from productgen.checkpoint import load_checkpoint
from productgen.losses import (
    Batch,
    GANLoss,
    LeCamAnchors,
    LossWeights,
    VAEGANLoss,
    VAELoss,
    _frozen,
    _learn_prior,
    _lecam,
    _prior_samples,
    _pulled,
    d_regulariser,
    g_adversarial,
)
from productgen.models import (
    FAMILIES,
    FAMILY_NETWORKS,
    Discriminator,
    ModelConfig,
    PatchDiscriminator,
    VAEEncoder,
    build_generator,
)
from productgen.models.networks import ConditionalPrior
from productgen.models.stylegan import StyleGenerator
from productgen.render import RenderPipeline
from productgen.train import train, train_config

TINY = {"batch_size": 8, "g_ch": 8, "d_ch": 8, "z_dim": 16, "cond_dim": 32, "sample_every": 1000,
        "checkpoint_every": 1000}  # fmt: skip
CONFIG = ModelConfig(cond_in=40, z_dim=16, cond_dim=24, g_ch=8, d_ch=8, aux_classes={"category": 3})


def _tiny(max_steps: int, **overrides: object):
    return dataclasses.replace(
        train_config("cpu-demo", **{**TINY, **overrides}), max_steps=max_steps, max_minutes=None
    )


def _batch(b: int = 8, step: int = 0) -> Batch:
    return Batch(
        images=torch.rand(b, 3, 32, 32) * 2 - 1,
        conditions=torch.randn(b, CONFIG.cond_in),
        labels={"category": torch.tensor([0, 1, -1, 2, 0, 1, 2, 0][:b])},
        step=step,
    )


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(sorted((run / "checkpoints").glob("*.safetensors"))[-1])[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_resumes_bit_for_bit_and_renders_deterministically(
    tiny_snapshot: Path, tmp_path: Path, family: str
) -> None:
    """4 steps in one go equal 2 steps and a resume for 2 more (every tensor: networks, EMA,
    optimisers, RNG); the model then renders the same pixels twice, each row independent of its batch."""
    straight = train(tiny_snapshot, tmp_path / "straight", _tiny(4, family=family))
    train(tiny_snapshot, tmp_path / "split", _tiny(2, family=family))
    resumed = train(tiny_snapshot, tmp_path / "split", _tiny(4, family=family), resume=True)
    assert straight.step == resumed.step == 4
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert a.keys() == b.keys() and any(k.startswith("G.") for k in a)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    prefixes = {k.split(".")[0] for k in a}
    networks = FAMILY_NETWORKS[family]
    assert ("D" in prefixes) == (networks.discriminator is not None)
    assert ("E" in prefixes) == (networks.encoder is not None)
    if "G_ema.latent.scale" in a:  # the VAEs fit their latent prior; the GANs draw from N(0, I)
        identity = torch.equal(a["G_ema.latent.scale"], torch.eye(16)) and not a["G_ema.latent.mean"].any()
        assert identity == (networks.encoder is None)

    pipeline = RenderPipeline.from_run(tmp_path / "split")
    assert pipeline.generator.config.family == family
    conditions, _ = pipeline.snapshot_conditions(tiny_snapshot)
    seeds = pipeline.seeds([f"sku-{i}" for i in range(6)])
    first = pipeline(conditions=conditions[:6], seeds=seeds).images
    again = RenderPipeline.from_run(tmp_path / "split")(conditions=conditions[:6], seeds=seeds).images
    alone = pipeline(conditions=conditions[2:3], seeds=seeds[2:3]).images
    assert first.shape == (6, 32, 32, 3) and first.std() > 0
    assert np.array_equal(first, again) and np.array_equal(first[2:3], alone)
    assert not np.array_equal(first[0], first[1])


@pytest.mark.parametrize("adversarial", ["hinge", "nonsaturating", "wgan-gp"])
@pytest.mark.parametrize("family", ["cgan", "vaegan"])
def test_each_adversarial_loss_trains_each_discriminator_family(family: str, adversarial: str) -> None:
    """One step under every loss option gives finite losses and moves the generator."""
    torch.manual_seed(0)
    config = dataclasses.replace(CONFIG, family=family)
    G, D = build_generator(config), Discriminator(config)
    before = [p.detach().clone() for p in G.parameters()]
    weights = LossWeights(adversarial=adversarial)
    if family == "cgan":
        loss = GANLoss(G, D, torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters()), weights)
    else:
        E = VAEEncoder(config)
        opt_g = torch.optim.Adam([*G.parameters(), *E.parameters()])
        loss = VAEGANLoss(G, E, D, opt_g, torch.optim.Adam(D.parameters()), weights)
    metrics = loss.step(_batch())
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert any(not torch.equal(p, q) for p, q in zip(before, G.parameters(), strict=True))


def test_gradient_penalties_follow_the_settings() -> None:
    """WGAN-GP's penalty is on whenever its loss is chosen; R1 only on its lazy steps, scaled up."""
    torch.manual_seed(0)
    D, batch = Discriminator(CONFIG), _batch()
    fake = torch.rand_like(batch.images) * 2 - 1
    assert float(d_regulariser(D, LossWeights(), batch, fake)) == 0.0
    assert float(d_regulariser(D, LossWeights(adversarial="wgan-gp"), batch, fake).detach()) > 0
    r1 = LossWeights(r1=1.0, r1_every=4)
    on, off = d_regulariser(D, r1, _batch(step=8), fake), d_regulariser(D, r1, _batch(step=9), fake)
    assert float(on.detach()) > 0 and float(off) == 0.0
    on.backward()  # the penalty trains D
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in D.parameters())
    with pytest.raises(ValueError, match="adversarial loss must be one of"):
        LossWeights(adversarial="wasserstein")
    with pytest.raises(ValueError, match="adv_start must be a step number"):
        LossWeights(adv_start=-1)


def test_stylegan_mixes_styles_in_training_and_truncates_towards_its_condition() -> None:
    """Training draws mixed per-layer styles; eval uses one w per image and fixed noise; psi=0 gives
    every noise draw the same image for one condition, and different conditions stay different."""
    torch.manual_seed(0)
    G = StyleGenerator(dataclasses.replace(CONFIG, family="stylegan"))
    z, cond = torch.randn(64, 16), torch.randn(1, CONFIG.cond_in).expand(64, -1)
    ws = G.train().ws(z, cond)
    assert (ws[:, 0] != ws[:, -1]).any(dim=1).any()  # some images took later styles from a second w
    G.eval()
    assert torch.equal(G.ws(z, cond), G.ws(z, cond)[:, :1].expand(-1, G.num_ws, -1))
    with torch.no_grad():
        assert torch.equal(G(z[:4], cond[:4]), G(z[:4], cond[:4]))  # const noise in eval
        centred = G(z[:4], cond[:4], psi=0.0)
        assert torch.allclose(centred[0], centred[3], atol=1e-5)
        free = G(z[:4], cond[:4])
        assert (free[0] - free[3]).abs().max() > 1e-3
        other = G(z[:1], torch.randn(1, CONFIG.cond_in), psi=0.0)
        assert (other[0] - centred[0]).abs().max() > 1e-3


def test_family_settings_are_data_and_the_loss_is_an_option() -> None:
    assert train_config("cpu-demo", family="stylegan").weights.r1 > 0
    assert train_config("cpu-demo", family="dcgan").weights.adversarial == "nonsaturating"
    wgan = train_config("cpu-demo", family="cgan", loss="wgan-gp")
    assert wgan.weights.adversarial == "wgan-gp" and wgan.weights.kl_cond == 0.05  # family weights kept
    partial = train_config("cpu-demo", family="vaegan", weights={"adv": 5.0})
    assert partial.weights.adv == 5.0 and partial.weights.kl_vae == 2.0
    with pytest.raises(ValueError, match="unknown model family"):
        train_config("cpu-demo", family="diffusion")
    with pytest.raises(ValueError, match="model family must be one of"):
        ModelConfig(family="diffusion")


def test_the_cvae_classifier_learns_from_photos_only_and_steers_the_prior_samples() -> None:
    """weights.prior_aux: a classifier beside the cVAE learns the attributes from the real photos
    (its update is the same whatever the decoder does), and the decoder's update gains a term."""
    torch.manual_seed(0)
    config = dataclasses.replace(CONFIG, family="cvae")
    G, E, C = build_generator(config), VAEEncoder(config), Discriminator(config)
    G2, E2, C2 = (copy.deepcopy(m) for m in (G, E, C))
    weights = LossWeights(prior_aux=50.0, augment=False)
    steered = VAELoss(
        G, E, torch.optim.Adam([*G.parameters(), *E.parameters()]), weights,
        classifier=C, opt_c=torch.optim.Adam(C.parameters()),
    )  # fmt: skip
    batch = _batch()
    torch.manual_seed(1)
    metrics = steered.step(batch)
    assert {"c_aux", "g_aux"} <= metrics.keys() and all(np.isfinite(float(v)) for v in metrics.values())
    assert set(steered.networks()) == {"G", "E", "C"} and set(steered.optimizers()) == {"opt", "opt_c"}

    # the classifier alone, on the photos alone: the same classifier after the step
    opt_c2 = torch.optim.Adam(C2.parameters())
    logits = C2(batch.images, batch.conditions)[1]["category"]
    F.cross_entropy(logits, batch.labels["category"], ignore_index=-1).backward()
    opt_c2.step()
    assert all(torch.equal(a, b) for a, b in zip(C.parameters(), C2.parameters(), strict=True))
    # the decoder without the term moves differently
    plain = VAELoss(G2, E2, torch.optim.Adam([*G2.parameters(), *E2.parameters()]), LossWeights())
    torch.manual_seed(1)
    plain.step(batch)
    assert any(not torch.equal(a, b) for a, b in zip(G.parameters(), G2.parameters(), strict=True))


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Equal parameters and buffers, bit for bit."""
    return all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def _seeded_step(loss: VAELoss, at: int) -> dict[str, torch.Tensor]:
    """One step of LOSS at global step AT on the same batch and noise as any other loss's."""
    torch.manual_seed(1)
    return loss.step(_batch(step=at))


def test_the_cvae_classifier_runs_every_classifier_every_steps_its_terms_scaled_to_match() -> None:
    """weights.classifier_every: on the steps between, the classifier neither learns nor judges
    (the step is the cVAE's without it, bit for bit); on its steps, the decoder's term is the
    every-step one at that many times the weight."""
    torch.manual_seed(0)
    config = dataclasses.replace(CONFIG, family="cvae")
    networks = build_generator(config), VAEEncoder(config), Discriminator(config)

    def loss_of(weights: LossWeights, classifier: bool = True) -> VAELoss:
        G, E, C = (copy.deepcopy(m) for m in networks)
        judge = {"classifier": C, "opt_c": torch.optim.Adam(C.parameters())} if classifier else {}
        return VAELoss(G, E, torch.optim.Adam([*G.parameters(), *E.parameters()]), weights, **judge)

    every_2nd = LossWeights(prior_aux=10.0, classifier_every=2)
    lazy, without = loss_of(every_2nd), loss_of(LossWeights(), classifier=False)
    metrics = _seeded_step(lazy, 1)
    _seeded_step(without, 1)
    assert _same(lazy.G, without.G) and _same(lazy.C, networks[2]) and "g_aux" not in metrics

    lazy, doubled = loss_of(every_2nd), loss_of(LossWeights(prior_aux=20.0))
    assert "g_aux" in _seeded_step(lazy, 2)
    _seeded_step(doubled, 2)
    assert _same(lazy.G, doubled.G) and _same(lazy.C, doubled.C) and not _same(lazy.C, networks[2])
    with pytest.raises(ValueError, match="classifier_every must be a positive integer"):
        LossWeights(classifier_every=0)


@pytest.mark.parametrize(
    ("family", "weights", "network"),
    [
        ("cvae", {"prior_aux": 20.0}, "C."),
        ("cvae", {"prior_aux": 20.0, "classifier_every": 2}, "C."),
        ("cvae", {"prior_aux": 20.0, "prior_adv": 5.0, "adv_start": 2}, "C."),
        ("vaegan", {"prior_aux": 10.0, "adv_start": 2}, "D."),
        ("vaegan", {"prior_aux": 10.0}, "G.prior."),  # with its conditional prior (set below)
        ("cvae", {"prior_aux": 20.0}, "G.detail."),  # with its detail code (set below)
        ("cvae", {"prior_aux": 20.0, "recon_adv": 0.5, "adv_start": 2}, "G.blocks.0.noise_strength"),
        ("cvae", {"prior_aux": 20.0, "prior_adv": 5.0, "adv_start": 2, "lecam": 0.3}, "lecam."),
        ("vaegan", {"prior_aux": 10.0, "lecam": 0.3}, "lecam."),
        ("cgan", {"lecam": 0.3}, "lecam."),
        ("cvae", {"prior_aux": 20.0, "patch_adv": 0.5, "adv_start": 2}, "P."),
    ],
)
def test_the_classifier_options_resume_bit_for_bit(
    tiny_snapshot: Path, tmp_path: Path, family: str, weights: dict, network: str
) -> None:
    """The cVAE's classifier, and the VAE-GAN whose adversarial terms start at the resumed step."""
    settings = {
        "family": family, "weights": weights, "prior_components": 4 if network == "G.prior." else 0,
        "detail_ch": 2 if network == "G.detail." else 0, "pixel_noise": "noise_strength" in network,
    }  # fmt: skip
    train(tiny_snapshot, tmp_path / "straight", _tiny(4, **settings))
    train(tiny_snapshot, tmp_path / "split", _tiny(2, **settings))
    train(tiny_snapshot, tmp_path / "split", _tiny(4, **settings), resume=True)
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert any(k.startswith(network) for k in a) and [k for k in a if not torch.equal(a[k], b[k])] == []


def test_the_vaegan_starts_its_adversarial_terms_at_adv_start() -> None:
    """Before `adv_start` the VAE-GAN is the cVAE with its classifier: D learns only the attributes,
    from photos (its real/fake score and projection stay as they were) and the decoder has no
    adversarial or feature term; from that step on both come in."""
    torch.manual_seed(0)
    config = dataclasses.replace(CONFIG, family="vaegan")
    G, E, D = build_generator(config), VAEEncoder(config), Discriminator(config)
    loss = VAEGANLoss(
        G, E, D, torch.optim.Adam([*G.parameters(), *E.parameters()]), torch.optim.Adam(D.parameters()),
        LossWeights(prior_aux=10.0, adv_start=3),
    )  # fmt: skip
    score_head = [p.detach().clone() for p in (*D.linear.parameters(), *D.embed.parameters())]
    aux_head = [p.detach().clone() for p in D.aux.parameters()]

    def moved(before, params) -> bool:
        return any(not torch.equal(a, b) for a, b in zip(before, params, strict=True))

    for step in range(3):
        metrics = loss.step(_batch(step=step))
        assert float(metrics["g_adv"]) == 0.0 and float(metrics["feature_match"]) == 0.0
    assert not moved(score_head, [*D.linear.parameters(), *D.embed.parameters()])
    assert moved(aux_head, D.aux.parameters()) and float(metrics["g_aux"]) > 0
    metrics = loss.step(_batch(step=3))
    assert float(metrics["g_adv"]) != 0.0 and float(metrics["feature_match"]) > 0.0
    assert moved(score_head, [*D.linear.parameters(), *D.embed.parameters()])


def test_the_cvae_classifier_turns_adversarial_at_adv_start() -> None:
    """weights.prior_adv: from `adv_start` on, the cVAE's classifier also learns photo against prior
    sample (before, its score head stays as it was), and the decoder's update gains a term to fool
    it; its attribute heads still learn from photos only. Both learn from one pass of samples: the
    decoder runs twice a step (reconstructions, prior samples), as before `adv_start`."""
    torch.manual_seed(0)
    config = dataclasses.replace(CONFIG, family="cvae")
    G, E, C = build_generator(config), VAEEncoder(config), Discriminator(config)
    weights = LossWeights(prior_aux=10.0, prior_adv=5.0, adv_start=2)
    loss = VAELoss(
        G, E, torch.optim.Adam([*G.parameters(), *E.parameters()]), weights,
        classifier=C, opt_c=torch.optim.Adam(C.parameters()),
    )  # fmt: skip

    def score_head() -> list[torch.Tensor]:
        return [p.detach().clone() for p in (*C.linear.parameters(), *C.embed.parameters())]

    decodes: list[int] = []
    G.out.register_forward_hook(lambda *_: decodes.append(1))  # the decoder's last layer
    before = score_head()
    for step in range(2):
        metrics = loss.step(_batch(step=step))
        assert "g_adv" not in metrics
    assert all(torch.equal(a, b) for a, b in zip(before, score_head(), strict=True))
    assert len(decodes) == 4
    before = score_head()
    metrics = loss.step(_batch(step=2))
    assert np.isfinite(float(metrics["g_adv"])) and float(metrics["c_aux"]) > 0 and len(decodes) == 6
    assert any(not torch.equal(a, b) for a, b in zip(before, score_head(), strict=True))


def _steps_against_plain(judged: VAELoss, plain: VAELoss, G, G2, steps: range = range(2)):
    """STEPS of a loss with a balanced judge (adv_start 1) beside the plain loss, the same seeds:
    at step 0, before adv_start, the decoders stay equal bit for bit; after, they part. Returns
    the judged loss's last metrics."""
    for step in steps:
        torch.manual_seed(step)
        metrics = judged.step(_batch(step=step))
        torch.manual_seed(step)
        plain.step(_batch(step=step))
        same = all(torch.equal(a, b) for a, b in zip(G.parameters(), G2.parameters(), strict=True))
        assert same == (step == 0)  # step 0 is before adv_start: the plain step, bit for bit
    return metrics


def _assert_balanced(judged: VAELoss, G, score) -> None:
    """The balance itself: the scaled term's gradient at the decoder's last layer has the pixel
    loss's norm. score: (reconstruction, batch) -> the judge's scores."""
    torch.manual_seed(5)
    batch = _batch(step=3)
    recon = judged._reconstruct(batch)[3]
    rec = F.l1_loss(recon, batch.images, reduction="none").sum((1, 2, 3)).mean()
    adv = g_adversarial("hinge", score(recon, batch))
    weight = judged._balanced(rec, adv)
    g_rec, g_adv = (torch.autograd.grad(t, G.out.weight, retain_graph=True)[0] for t in (rec, adv))
    assert torch.allclose((weight * g_adv).norm(), g_rec.norm(), rtol=1e-3)


def test_the_cvae_classifier_judges_reconstructions_balanced_vqgan_style() -> None:
    """weights.recon_adv: from `adv_start` on, the classifier learns photo against reconstruction,
    and the decoder's term is scaled so its gradient at the last layer is the pixel loss's times
    the weight (the scale reported as adv_weight); before, the step is the classifier-only one."""
    torch.manual_seed(0)
    config = dataclasses.replace(CONFIG, family="cvae", pixel_noise=True)
    G, E, C = build_generator(config), VAEEncoder(config), Discriminator(config)
    G2, E2, C2 = (copy.deepcopy(m) for m in (G, E, C))

    def loss_of(G, E, C, weights):
        opt = torch.optim.Adam([*G.parameters(), *E.parameters()])
        return VAELoss(G, E, opt, weights, classifier=C, opt_c=torch.optim.Adam(C.parameters()))

    judged = loss_of(G, E, C, LossWeights(prior_aux=10.0, recon_adv=0.5, adv_start=1, augment=False))
    plain = loss_of(G2, E2, C2, LossWeights(prior_aux=10.0, augment=False))
    metrics = _steps_against_plain(judged, plain, G, G2)
    assert {"g_adv", "adv_weight"} <= metrics.keys() and float(metrics["adv_weight"]) > 0

    _assert_balanced(judged, G, lambda recon, batch: C(recon, batch.conditions)[0])
    with pytest.raises(ValueError, match="not both"):
        LossWeights(prior_adv=1.0, recon_adv=1.0)


def test_lecam_pulls_each_score_towards_the_other_kinds_average() -> None:
    """weights.lecam adds, to the discriminator's loss, each real score's squared distance from the
    moving average of fake scores and each fake score's from that of real scores (the averages
    updated with this batch first)."""
    anchors = LeCamAnchors(decay=0.9)
    real, fake = torch.tensor([2.0, 4.0]), torch.tensor([-1.0, -3.0])
    penalty = anchors.penalty(real, fake)
    assert torch.allclose(anchors.real, torch.tensor(0.3))  # 0.9 * 0 + 0.1 * 3
    assert torch.allclose(anchors.fake, torch.tensor(-0.2))
    expected = ((real + 0.2) ** 2).mean() + ((fake - 0.3) ** 2).mean()
    assert torch.allclose(penalty, expected)

    torch.manual_seed(0)
    G, D = build_generator(CONFIG), Discriminator(CONFIG)
    G2, D2 = copy.deepcopy(G), copy.deepcopy(D)

    def loss_of(G, D, weights):
        return GANLoss(G, D, torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters()), weights)

    regularised = loss_of(G, D, LossWeights(lecam=100.0, augment=False))
    plain = loss_of(G2, D2, LossWeights(augment=False))
    torch.manual_seed(1)
    with_it = regularised.step(_batch())
    torch.manual_seed(1)
    without = plain.step(_batch())
    assert float(with_it["d_loss"]) > float(without["d_loss"])  # the penalty is in D's loss
    assert float(regularised.anchors.real) != 0.0 and "lecam" in regularised.networks()
    assert "lecam" not in plain.networks()
    on_meta = _lecam(LossWeights(lecam=1.0), Discriminator(CONFIG).to("meta"))  # another device
    assert on_meta is not None and on_meta.real.device.type == "meta"  # the scores' device
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="lecam"):
            LossWeights(lecam=bad)
    C = Discriminator(CONFIG)
    with pytest.raises(ValueError, match="prior_adv or recon_adv"):  # no classifier scores to pull
        VAELoss(G, VAEEncoder(CONFIG), torch.optim.Adam(G.parameters()),
                LossWeights(prior_aux=1.0, lecam=0.1), classifier=C,
                opt_c=torch.optim.Adam(C.parameters()))  # fmt: skip


def test_lecam_turned_on_at_a_resume_starts_its_averages_afresh(tiny_snapshot: Path, tmp_path: Path) -> None:
    plain = {"family": "cgan", "weights": {}}
    train(tiny_snapshot, tmp_path / "run", _tiny(2, **plain))
    train(tiny_snapshot, tmp_path / "run", _tiny(4, **{**plain, "weights": {"lecam": 0.3}}), resume=True)
    anchors = {k: v for k, v in _weights(tmp_path / "run").items() if k.startswith("lecam.")}
    assert set(anchors) == {"lecam.real", "lecam.fake"} and float(anchors["lecam.real"]) != 0.0


def test_the_patch_discriminator_scores_each_patch_from_its_own_pixels() -> None:
    """One score per 2 x 2 block of the image, each seeing only the 10 x 10 pixels around it: a
    pixel changed at (20, 20) moves the scores of grid cells 8-12 in each direction, no others."""
    torch.manual_seed(0)
    P = PatchDiscriminator(CONFIG).eval()  # eval: spectral norm's estimate stays put between calls
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        before = P(x)
        x[:, :, 20, 20] = -x[:, :, 20, 20] + 0.5
        moved = (P(x) != before).view(2, 16, 16).any(0).nonzero().tolist()
    assert before.shape == (2, 256)
    assert [10, 10] in moved and all(8 <= r <= 12 and 8 <= c <= 12 for r, c in moved)


def test_the_patch_discriminator_judges_reconstructions_from_adv_start() -> None:
    """weights.patch_adv: before `adv_start` the step is the plain one, bit for bit, and P does not
    move; from it on P learns photo patches against reconstruction patches, and the decoder's term
    is balanced as recon_adv's (its gradient at the last layer is the pixel loss's times the weight)."""
    torch.manual_seed(0)
    config = dataclasses.replace(CONFIG, family="cvae")
    G, E, C = build_generator(config), VAEEncoder(config), Discriminator(config)
    P = PatchDiscriminator(config)
    G2, E2, C2 = (copy.deepcopy(m) for m in (G, E, C))
    untouched = copy.deepcopy(P.state_dict())

    def loss_of(G, E, C, weights, P=None):
        opt = torch.optim.Adam([*G.parameters(), *E.parameters()])
        opt_c = torch.optim.Adam(C.parameters())
        return VAELoss(G, E, opt, weights, classifier=C, opt_c=opt_c, patches=P,
                       opt_p=torch.optim.Adam(P.parameters()) if P else None)  # fmt: skip

    judged = loss_of(G, E, C, LossWeights(prior_aux=10.0, patch_adv=0.5, adv_start=1), P)
    plain = loss_of(G2, E2, C2, LossWeights(prior_aux=10.0))
    assert set(judged.networks()) == {"G", "E", "C", "P"} and "opt_p" in judged.optimizers()
    before = _steps_against_plain(judged, plain, G, G2, range(1))
    assert all(torch.equal(v, P.state_dict()[k]) for k, v in untouched.items())
    assert "p_loss" not in before
    metrics = _steps_against_plain(judged, plain, G, G2, range(1, 2))
    assert {"p_loss", "g_patch", "patch_weight"} <= metrics.keys() and float(metrics["patch_weight"]) > 0
    assert any(not torch.equal(v, P.state_dict()[k]) for k, v in untouched.items())
    _assert_balanced(judged, G, lambda recon, batch: P(recon))


def test_the_patch_terms_gradient_is_taken_once_and_is_the_terms_own() -> None:
    """The decoder's patch term goes back through P once, to the image: the balance and the update
    start from that gradient, and they equal what a pass of their own through P gives."""
    torch.manual_seed(0)
    P = PatchDiscriminator(CONFIG).requires_grad_(False)
    weights = torch.randn(8, 3, 32, 32, requires_grad=True)  # stands for the decoder's parameters
    image = torch.tanh(1.5 * weights)
    term = g_adversarial("hinge", P(image))
    (direct,) = torch.autograd.grad([term], [weights], retain_graph=True)
    (pull,) = torch.autograd.grad([term], [image], retain_graph=True)
    surrogate = _pulled(image, pull)
    assert float(surrogate.detach()) == 0.0  # adds nothing to the loss's value
    (once,) = torch.autograd.grad([surrogate], [weights])
    assert torch.allclose(once, direct, atol=1e-7) and direct.abs().max() > 0

    config = dataclasses.replace(CONFIG, family="cvae")
    G, E = build_generator(config), VAEEncoder(config)
    judged = VAELoss(G, E, torch.optim.Adam([*G.parameters(), *E.parameters()]), LossWeights(), patches=P)
    batch = _batch()
    recon = judged._reconstruct(batch)[3]
    rec = F.l1_loss(recon, batch.images, reduction="none").sum((1, 2, 3)).mean()
    adv = g_adversarial("hinge", P(recon))
    (pull,) = torch.autograd.grad([adv], [recon], retain_graph=True)
    assert torch.allclose(judged._balanced(rec, recon, pull), judged._balanced(rec, adv), rtol=1e-5)


def test_the_patch_discriminator_runs_every_patch_every_steps_its_term_scaled_to_match() -> None:
    """weights.patch_every: on the steps between, P neither learns nor judges (the step is the
    cVAE's without it, bit for bit); on its steps, the step is the every-step one at that many
    times the weight, P's update included."""
    torch.manual_seed(0)
    config = dataclasses.replace(CONFIG, family="cvae")
    networks = build_generator(config), VAEEncoder(config), PatchDiscriminator(config)

    def loss_of(weights: LossWeights) -> VAELoss:
        G, E, P = (copy.deepcopy(m) for m in networks)
        judge = {"patches": P, "opt_p": torch.optim.Adam(P.parameters())} if weights.patch_adv else {}
        return VAELoss(G, E, torch.optim.Adam([*G.parameters(), *E.parameters()]), weights, **judge)

    every_2nd = LossWeights(patch_adv=0.5, patch_every=2)
    lazy, without = loss_of(every_2nd), loss_of(LossWeights())
    metrics = _seeded_step(lazy, 1)
    _seeded_step(without, 1)
    assert _same(lazy.G, without.G) and _same(lazy.P, networks[2]) and "g_patch" not in metrics

    lazy, doubled = loss_of(every_2nd), loss_of(LossWeights(patch_adv=1.0))
    assert "g_patch" in _seeded_step(lazy, 2)
    _seeded_step(doubled, 2)
    assert _same(lazy.G, doubled.G) and _same(lazy.P, doubled.P) and not _same(lazy.P, networks[2])
    with pytest.raises(ValueError, match="patch_every must be a positive integer"):
        LossWeights(patch_every=1.5)


@pytest.mark.parametrize("family", ["cgan", "vaegan", "stylegan", "dcgan"])
@pytest.mark.parametrize("weights", [{"patch_adv": 0.5}, {"classifier_every": 4}, {"patch_every": 2}])
def test_the_cvaes_own_options_are_refused_by_the_other_families(
    tiny_snapshot: Path, tmp_path: Path, family: str, weights: dict
) -> None:
    """The patch discriminator and the classifier's pace: a family without them says so by name."""
    (name,) = weights
    with pytest.raises(ValueError, match=f"{name} .*--model {family} has none"):
        train(tiny_snapshot, tmp_path / "run", _tiny(1, family=family, weights=weights))


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_every_loss_weight_refuses_a_negative_or_nan_value(bad: float) -> None:
    for name in ("patch_adv", "kl_vae", "prior_aux", "recon"):
        with pytest.raises(ValueError, match=f"weight {name} must be 0"):
            LossWeights(**{name: bad})


def test_noise_inputs_read_the_renders_noise_values() -> None:
    """pixel_noise: the decoder's noise maps come after the codes' values in a render's noise, so a
    render is a function of its noise; without values they are drawn in training and left out of
    it; strengths start at zero, so a new model renders as one without noise inputs."""
    torch.manual_seed(0)
    config = dataclasses.replace(CONFIG, family="cvae", detail_ch=2, pixel_noise=True)
    assert config.noise_dim == 16 + 2 * 64 + 2 * (64 + 256 + 1024)
    G = build_generator(config).eval()
    noise, cond = torch.randn(3, config.noise_dim), torch.randn(3, config.cond_in)
    maps = slice(16 + 2 * 64, None)
    other = noise.clone()
    other[:, maps] = torch.randn_like(other[:, maps])
    assert torch.equal(G(noise, cond), G(other, cond))  # strengths at zero: the maps add nothing
    with torch.no_grad():
        for block in G.blocks:
            block.noise_strength.fill_(0.5)
    assert torch.equal(G(noise, cond), G(noise.clone(), cond))
    assert (G(noise, cond) - G(other, cond)).abs().max() > 1e-3
    codes = G.codes(noise, cond)
    detail = noise[:, 16 : 16 + 2 * 64]
    assert torch.equal(G.decode(codes, cond, detail), G.decode(codes, cond, detail))  # no maps: none
    G.train()
    assert not torch.equal(G.decode(codes, cond, detail), G.decode(codes, cond, detail))  # drawn
    with pytest.raises(ValueError, match="pixel_noise"):
        ModelConfig(family="stylegan", pixel_noise=True)
    older = {k: v for k, v in CONFIG.to_json().items() if k != "pixel_noise"}  # saved before the option
    assert not ModelConfig.from_json(older).pixel_noise


def test_the_latent_prior_is_n01_until_observed_then_draws_like_the_encoders_codes() -> None:
    """Renders draw codes from the moments of the codes the encoder gives photos (each posterior's
    mean spread across photos, plus its own variance), and truncation pulls them to their mean."""
    G = build_generator(dataclasses.replace(CONFIG, family="cvae")).eval()
    noise, cond = torch.randn(4, 16), torch.randn(4, CONFIG.cond_in)
    assert torch.equal(G(noise, cond, psi=0.5), G.decode(noise * 0.5, cond))

    torch.manual_seed(0)
    mean, mix = torch.linspace(-1, 1, 16), torch.randn(16, 16) * 0.3
    spread = mix @ mix.T + 0.5 * torch.eye(16)  # covariance of the posterior means across photos
    for _ in range(2000):
        mu = mean + torch.randn(64, 16) @ torch.linalg.cholesky(spread).T
        G.latent.observe(mu, torch.full((64, 16), -2.0))
    codes = G.latent(torch.randn(50_000, 16))
    expected = spread + np.exp(-2.0) * torch.eye(16)
    assert torch.allclose(codes.mean(0), mean, atol=0.05)
    assert torch.allclose(torch.cov(codes.T), expected, atol=0.08)
    assert torch.allclose(G.latent(torch.randn(3, 16), psi=0.0), mean.expand(3, -1), atol=0.05)
    assert torch.equal(G(noise, cond), G.decode(G.latent(noise), cond))


def test_the_conditional_prior_learns_each_rows_codes_and_draws_them_from_its_noise() -> None:
    """A row's codes can sit in a region of their own with more than one mode: the prior learns
    that from (code, condition) pairs alone, and turns render noise into codes deterministically,
    the component picked in proportion to its weight and the noise's last value drawn anew."""
    torch.manual_seed(0)
    prior = ConditionalPrior(cond_in=2, z_dim=3, components=4, hidden=32)
    opt = torch.optim.Adam(prior.parameters(), lr=1e-2)
    rows = torch.eye(2)  # two rows: codes near +-3 (two modes) on the first, near (0, 2, 0) on the second

    def codes(row: torch.Tensor) -> torch.Tensor:
        first = torch.where(torch.rand(len(row), 1) < 0.7, 3.0, -3.0) * torch.tensor([1.0, 0, 0])
        second = torch.tensor([0.0, 2.0, 0.0])
        centre = torch.where(row[:, :1] > 0, first, second)
        return centre + 0.3 * torch.randn(len(row), 3)

    for _ in range(600):
        row = rows[torch.randint(2, (256,))]
        loss = prior.nll(codes(row), row)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        noise = torch.randn(20_000, 3)
        first, second = prior(noise, rows[:1].expand(20_000, -1)), prior(noise, rows[1:].expand(20_000, -1))
        again = prior(noise, rows[:1].expand(20_000, -1))
    # the same noise, the same code (at the same batch shape, as renders keep it: render.same_kernels)
    assert torch.equal(first, again)
    assert abs(float((first[:, 0] > 0).float().mean()) - 0.7) < 0.03  # both modes, in their shares
    assert float((first[:, 0].abs() - 3).abs().mean()) < 0.4 and float(first[:, 1:].abs().mean()) < 0.4
    assert torch.allclose(second.mean(0), torch.tensor([0.0, 2.0, 0.0]), atol=0.05)
    assert torch.allclose(second.std(0), torch.full((3,), 0.3), atol=0.05)  # the last noise value too
    with torch.no_grad():  # truncation: onto the picked component's mean
        centres = prior(noise, rows[1:].expand(20_000, -1), psi=0.0)
    near = (centres - torch.tensor([0.0, 2.0, 0.0])).abs().amax(1) < 0.2
    assert float(near.float().mean()) > 0.99  # (a component of negligible weight may sit elsewhere)


def test_the_conditional_prior_learns_from_the_encoders_codes_only() -> None:
    """The decoder's prior samples are drawn from it, but nothing trains it through them: its only
    gradient is the codes' likelihood; the GAN families, without codes, cannot have one."""
    config = dataclasses.replace(CONFIG, family="cvae", prior_components=4)
    G = build_generator(config)
    cond = torch.randn(8, CONFIG.cond_in)
    _prior_samples(G, torch.randn(8, 16), cond).sum().backward()
    assert all(p.grad is None for p in G.prior.parameters())
    assert any(p.grad is not None for p in G.blocks.parameters())
    _learn_prior(G, torch.randn(8, 16, requires_grad=True), cond).backward()
    assert all(p.grad is not None for p in G.prior.parameters())
    with pytest.raises(ValueError, match="cvae or vaegan"):
        dataclasses.replace(CONFIG, family="cgan", prior_components=4)
    # a model file from before the option exists loads as the unconditional prior it was built with
    old = {k: v for k, v in config.to_json().items() if k != "prior_components"}
    assert ModelConfig.from_json(old).prior_components == 0


def test_the_generators_update_leaves_the_judges_weights_out_of_autograd() -> None:
    """While the generator's loss passes through D (or the cVAE's classifier) D is frozen: the
    generator's gradient is exactly what it was through an unfrozen D, D gets none of its own
    (it would be dropped unused), and D learns again afterwards."""
    torch.manual_seed(0)
    G, D = build_generator(CONFIG), Discriminator(CONFIG).eval()  # eval: one spectral-norm estimate
    z, cond = torch.randn(4, 16), torch.randn(4, CONFIG.cond_in)

    def grads(frozen: bool):
        torch.manual_seed(1)  # the same conditioning-augmentation draw
        G.zero_grad(set_to_none=True)
        D.zero_grad(set_to_none=True)
        with _frozen(D) if frozen else nullcontext():
            score, aux = D(G(z, cond), cond)
            (score.sum() + sum(logits.sum() for logits in aux.values())).backward()
        return [p.grad for p in G.parameters()], [p.grad for p in D.parameters()]

    (g_free, d_free), (g_frozen, d_frozen) = grads(False), grads(True)
    assert all(a is not None and torch.equal(a, b) for a, b in zip(g_free, g_frozen, strict=True))
    assert all(g is not None for g in d_free) and all(g is None for g in d_frozen)
    assert all(p.requires_grad for p in D.parameters())


def test_the_detail_code_learns_from_photos_and_draws_from_its_own_noise() -> None:
    """The cVAE's spatial detail code: its prior and posterior learn from the KL between them only
    (a prior sample trains the decoder, not them); a render is a function of its noise, the code's
    values first, so the detail noise changes only the detail; out of training a photo's detail
    is its posterior's mean; the densities do not follow the scale of the features they read
    (which the BatchNorm after them leaves free); and the option is the cVAE's, absent from older
    model files."""
    torch.manual_seed(0)
    config = dataclasses.replace(CONFIG, family="cvae", detail_ch=2, prior_components=2)
    assert config.noise_dim == 16 + 2 * 64
    G, E = build_generator(config), VAEEncoder(config)
    detail = [*G.detail.prior.parameters(), *G.detail.posterior.parameters()]
    torch.nn.init.normal_(G.detail.inject.weight, std=0.5)  # as if trained: the code shows
    cond, x = torch.randn(8, CONFIG.cond_in), torch.rand(8, 3, 32, 32) * 2 - 1

    _prior_samples(G, torch.randn(8, config.noise_dim), cond).sum().backward()
    assert all(p.grad is None for p in detail) and G.detail.inject.weight.grad is not None
    mu, _, photo = E(x, cond, detail=True)
    assert photo.shape == (8, 32, 8, 8)
    G.decode(mu, cond, photo=photo)
    assert float(G.detail.kl.detach()) > 0
    G.detail.kl.backward()
    assert all(p.grad is not None for p in detail)

    G.eval()
    with torch.no_grad():
        noise = torch.randn(8, config.noise_dim)
        other = torch.cat([noise[:, :16], torch.randn(8, 128)], dim=1)
        image, again, changed = G(noise, cond), G(noise, cond), G(other, cond)
        assert torch.equal(image, again) and not torch.equal(image, changed)
        assert torch.equal(G.codes(noise, cond), G.codes(other, cond))
        assert torch.equal(G.decode(mu, cond, photo=photo), G.decode(mu, cond, photo=photo))
        assert torch.equal(G(noise, cond, psi=0.0), G.decode(G.codes(noise, cond, psi=0.0), cond))
        h = torch.randn(8, G.detail.inject.out_channels, 8, 8)
        G.detail(h, photo=photo)
        kl = G.detail.kl
        G.detail(h * 100, photo=photo * 100)
        assert torch.allclose(G.detail.kl, kl, rtol=1e-3)
    with pytest.raises(ValueError, match="cVAE"):
        dataclasses.replace(CONFIG, family="vaegan", detail_ch=2)
    old = {k: v for k, v in config.to_json().items() if k != "detail_ch"}
    assert ModelConfig.from_json(old).detail_ch == 0
