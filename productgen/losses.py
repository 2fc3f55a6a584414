"""The losses own the interplay of the networks; the training loop only calls `step`.

GAN: a projection discriminator with DiffAugment on both sides, optional auxiliary attribute heads
(AC-GAN), and the conditioning-augmentation KL term. The adversarial objective is an option:
    hinge          Lim & Ye 2017 (BigGAN, SNGAN)
    nonsaturating  Goodfellow et al. 2014's -log D(G(z)) (DCGAN)
    wgan-gp        Gulrajani et al. 2017: Wasserstein critic with a gradient penalty on
                   interpolates, plus ProGAN's small drift term that keeps scores near zero
and R1 (Mescheder et al. 2018: a gradient penalty on real images, applied every few steps as
StyleGAN2's lazy regularisation) can be added to any of them, as can a diversity term (Mao et al.
2019, MSGAN; in the bounded form of Yang et al. 2019, DSGAN): two noise draws for one condition
are rewarded for images that differ, up to a cap, against collapse onto one image per condition.
VAE: a conditional VAE (Sohn et al. 2015) whose decoder is the same conditional generator; its
classifier of prior samples (AC-GAN's auxiliary loss without a discriminator) can also judge them
against the batch's photos from `adv_start` on, a GAN term on what renders are (`prior_adv`).
Cycle: the colour translator (productgen.models.translator), CycleGAN-style: a projection
discriminator on (image, the colour it shows) with an auxiliary colour head, cycle consistency
back to the photo's own colour and identity for a colour it already has.
VAE-GAN: Larsen et al. 2016, "Autoencoding beyond pixels": the same encoder and decoder, and a
discriminator that judges both reconstructions and prior samples; the decoder also matches the
real photo in the discriminator's feature space, which rewards texture a pixel loss averages out.
Those two terms can start late (`adv_start`, VQGAN's disc_start): until then the discriminator
learns only its attribute heads from photos, the cVAE's classifier, and costs a cVAE's step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from productgen.models.augment import diff_augment
from productgen.models.networks import Discriminator, Generator, VAEEncoder

__all__ = [
    "ADVERSARIAL", "Batch", "CycleLoss", "GANLoss", "LeCamAnchors", "LossWeights", "VAEGANLoss", "VAELoss",
]  # fmt: skip


@dataclass
class Batch:
    """One training batch on the device: images in [-1, 1], conditions, attribute labels (-1 unknown)."""

    images: torch.Tensor  # (B, 3, S, S) float
    conditions: torch.Tensor  # (B, C)
    labels: dict[str, torch.Tensor]  # attribute -> (B,) int64
    step: int = 0  # the global step (lazy regularisers run on some steps only)


ADVERSARIAL = ("hinge", "nonsaturating", "wgan-gp")
DIVERSITY_CAP = 0.5


@dataclass(frozen=True)
class LossWeights:
    aux: float = 1.0  # auxiliary attribute classification (GAN)
    kl_cond: float = 1.0  # conditioning augmentation KL
    kl_vae: float = 1.0  # VAE latent KL (beta)
    kl_detail: float = 1.0  # cVAE: the detail code's KL to its prior (ModelConfig.detail_ch)
    augment: bool = True  # DiffAugment translation + cutout (GAN)
    adversarial: str = "hinge"  # one of ADVERSARIAL
    gp: float = 10.0  # WGAN-GP's gradient penalty (lambda)
    r1: float = 0.0  # R1 penalty on real images (gamma); 0: off
    r1_every: int = 4  # lazy regularisation: R1 every this many steps, scaled up to match
    # cVAE: its classifier learns, and judges the decoder's images, every this many steps, the
    # decoder's terms from it scaled up to match (the classifier's part was 44% of a step)
    classifier_every: int = 1
    recon: float = 1.0  # VAE-GAN: pixel (L1) reconstruction
    feature_match: float = 1.0  # VAE-GAN: reconstruction in the discriminator's feature space
    adv: float = 1.0  # VAE-GAN: adversarial term of the encoder/decoder update
    diversity: float = 0.0  # GAN: reward for images that differ with the noise (DSGAN); 0: off
    # cVAE: its prior samples (what renders are) must be read as their row's attributes by a
    # classifier trained beside it on the train split's photos only; VAE-GAN: its reconstructions
    # and prior samples, by the discriminator's heads; per-image-sum units; 0: off
    prior_aux: float = 0.0
    # cVAE: its classifier also learns to tell the batch's photos from its prior samples (the
    # adversarial loss above), and the decoder is asked to fool it; per-image-sum units; 0: off
    prior_adv: float = 0.0
    # cVAE: its classifier also learns to tell the batch's photos from their reconstructions, and
    # the decoder is asked to fool it (VQGAN's recipe, Esser et al. 2021), the term balanced: its
    # gradient at the decoder's last layer is the pixel loss's times this weight; 0: off
    recon_adv: float = 0.0
    # every discriminator (the GANs', the VAE-GAN's, the cVAE's classifier with prior_adv or
    # recon_adv): LeCam's regulariser (Tseng et al. 2021), each score pulled towards the moving
    # average of the other kind's scores, so the discriminator cannot run away from the
    # generator; 0: off
    lecam: float = 0.0
    # cVAE: a patch discriminator (pix2pix's PatchGAN; models.PatchDiscriminator) learns to tell
    # the photos' 10 x 10 pixel patches from their reconstructions', and the decoder is asked to
    # fool it, the term balanced as recon_adv's; beside the classifier or instead of it; 0: off
    patch_adv: float = 0.0
    # cVAE: the patch discriminator learns, and judges the reconstructions, every this many steps
    # (from adv_start), the decoder's term from it scaled up to match, as classifier_every
    patch_every: int = 1
    # VAE-GAN, and the cVAE's prior_adv / recon_adv / patch_adv: the step its adversarial (and
    # feature) terms start (VQGAN's disc_start)
    adv_start: int = 0

    def __post_init__(self) -> None:
        if self.adversarial not in ADVERSARIAL:
            raise ValueError(
                f"adversarial loss must be one of {', '.join(ADVERSARIAL)}, got {self.adversarial!r}"
            )
        for name in ("r1_every", "classifier_every", "patch_every"):
            every = getattr(self, name)
            if not isinstance(every, int) or isinstance(every, bool) or every < 1:
                raise ValueError(f"{name} must be a positive integer, got {every!r}")
        if not isinstance(self.adv_start, int) or isinstance(self.adv_start, bool) or self.adv_start < 0:
            raise ValueError(f"adv_start must be a step number (0 or more), got {self.adv_start!r}")
        for f in fields(self):  # every weight: a negative or NaN one has no meaning
            value = getattr(self, f.name)
            if isinstance(f.default, float) and not (
                isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf
            ):
                raise ValueError(f"weight {f.name} must be 0 (off) or a positive number, got {value!r}")
        if self.prior_adv > 0 and self.recon_adv > 0:
            raise ValueError(
                "the cVAE's classifier judges prior samples (prior_adv) or reconstructions "
                "(recon_adv), not both: set one to 0"
            )


def d_adversarial(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's adversarial loss on real and fake scores (B,)."""
    real, fake = real.float(), fake.float()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if kind == "nonsaturating":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    return fake.mean() - real.mean() + 1e-3 * real.pow(2).mean()  # wgan-gp, with ProGAN's drift


def g_adversarial(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """The generator's adversarial loss on the scores of its images (B,)."""
    fake = fake.float()
    return F.softplus(-fake).mean() if kind == "nonsaturating" else -fake.mean()


def _input_gradient_norm2(D: nn.Module, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """||d D(x) / dx||^2 per image (B,), kept in the graph so the penalty trains D."""
    x = x.detach().requires_grad_(True)
    score, _ = D(x, cond)
    (grad,) = torch.autograd.grad(score.float().sum(), x, create_graph=True)
    return grad.float().pow(2).sum((1, 2, 3))


def d_regulariser(D: nn.Module, w: LossWeights, batch: Batch, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP's penalty on interpolates and/or lazy R1 on reals; zero when neither is on."""
    total = torch.zeros((), device=batch.images.device)
    if w.adversarial == "wgan-gp" and w.gp > 0:
        mix = torch.rand(len(fake), 1, 1, 1, device=fake.device)
        between = mix * batch.images + (1 - mix) * fake.detach()
        total = total + w.gp * (_input_gradient_norm2(D, between, batch.conditions).sqrt() - 1).pow(2).mean()
    if w.r1 > 0 and batch.step % w.r1_every == 0:
        penalty = _input_gradient_norm2(D, batch.images, batch.conditions).mean()
        total = total + 0.5 * w.r1 * w.r1_every * penalty
    return total


def _aux_loss(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> torch.Tensor:
    total = torch.zeros((), device=next(iter(labels.values())).device) if labels else torch.zeros(())
    for name, out in logits.items():
        target = labels[name]
        if (target >= 0).any():
            total = total + F.cross_entropy(out.float(), target, ignore_index=-1)
    return total


@contextmanager
def _frozen(net: nn.Module) -> Iterator[None]:
    """NET's parameters out of autograd while the generator's loss passes through it: their
    gradients would be dropped unused (the next update of NET clears them first), and computing
    them costs about a third of NET's backward pass. Gradients still flow through NET's input."""
    flags = [p.requires_grad for p in net.parameters()]
    net.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(net.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def _judge(D: nn.Module, w: LossWeights, x: torch.Tensor, cond: torch.Tensor):
    """D's (score, aux logits) on images as it sees them in training (DiffAugment when on)."""
    return D(diff_augment(x) if w.augment else x, cond)


def _photo_attributes(net: nn.Module, w: LossWeights, batch: Batch) -> torch.Tensor:
    """The attribute heads' loss on the batch's real photos: how a classifier (the cVAE's C, the
    VAE-GAN's D before its adversarial terms start) learns from photos only."""
    return _aux_loss(_judge(net, w, batch.images, batch.conditions)[1], batch.labels)


def _d_loss(
    D: nn.Module,
    w: LossWeights,
    batch: Batch,
    fake: torch.Tensor,
    fake_cond: torch.Tensor,
    anchors: LeCamAnchors | None = None,
):
    """The discriminator's loss on real photos vs `fake` (detached), aux heads on real photos only,
    plus its regularisers; (loss, aux loss)."""
    real_score, real_aux = _judge(D, w, batch.images, batch.conditions)
    fake_score, _ = _judge(D, w, fake.detach(), fake_cond)
    d_aux = _aux_loss(real_aux, batch.labels)
    d_loss = d_adversarial(w.adversarial, real_score, fake_score) + w.aux * d_aux
    if anchors is not None:
        d_loss = d_loss + w.lecam * anchors.penalty(real_score, fake_score)
    return d_loss + d_regulariser(D, w, batch, fake[: len(batch.images)]), d_aux


def _learn_prior(G: Generator, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """The conditional prior's loss: the likelihood of the encoder's codes (detached, so the
    prior follows the codes and never moves them) given their rows."""
    return G.prior.nll(z.detach(), cond)


def _prior_samples(G: Generator, noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """The decoder on codes drawn as renders draw them, from noise (B, noise_dim); the draw itself
    is not trained through (the priors learn from the encoder's codes only)."""
    with torch.no_grad():
        codes = G.codes(noise, cond)
    return G.decode(codes, cond, noise[:, G.config.z_dim :])


class LeCamAnchors(nn.Module):
    """Moving averages of a discriminator's mean score on real and on fake images (buffers, so
    checkpoints carry them and a resume is exact)."""

    def __init__(self, decay: float = 0.99) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("real", torch.zeros(()))
        self.register_buffer("fake", torch.zeros(()))

    def penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Update the averages with this batch's scores, then each score's squared distance from
        the other kind's average."""
        real, fake = real.float(), fake.float()
        with torch.no_grad():
            self.real.lerp_(real.mean(), 1 - self.decay)
            self.fake.lerp_(fake.mean(), 1 - self.decay)
        return (real - self.fake).pow(2).mean() + (fake - self.real).pow(2).mean()


def _lecam(w: LossWeights, discriminator: nn.Module | None) -> LeCamAnchors | None:
    """The anchors when LeCam is on, on the discriminator's device (its scores' device)."""
    if w.lecam <= 0:
        return None
    return LeCamAnchors().to(next(discriminator.parameters()).device)


def _named(anchors: LeCamAnchors | None) -> dict[str, nn.Module]:
    """The anchors as one of a loss's networks, so checkpoints carry them."""
    return {"lecam": anchors} if anchors is not None else {}


def _pulled(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """A zero whose gradient with respect to x is `grad`: a term's gradient computed once (at x)
    and then added to a loss, so its backward pass does not go through the term's network again."""
    moved = (x * grad).sum()
    return moved - moved.detach()


def _vae_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return 0.5 * (mu.float().pow(2) + logvar.float().exp() - 1 - logvar.float()).sum(1).mean()


class GANLoss:
    """One step = one discriminator update, then one generator update."""

    def __init__(
        self,
        generator: Generator,
        discriminator: Discriminator,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
        weights: LossWeights,
        autocast: AbstractContextManager | None = None,
    ) -> None:
        self.G, self.D, self.opt_g, self.opt_d, self.w = generator, discriminator, opt_g, opt_d, weights
        self.autocast = autocast or nullcontext()
        self.anchors = _lecam(weights, discriminator)

    def _diversity(self, z: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """-min(image distance / noise distance, cap) for a second draw on half the batch's conditions.

        Mean absolute distances: two unrelated photos differ by about 0.3-0.5 in [-1, 1] pixels and
        two draws by 1.13, so the cap (0.5) is never a reason to go beyond real variety."""
        h = max(1, len(z) // 2)
        other_z = torch.randn_like(z[:h])
        other = self.G(other_z, cond[:h])
        image = (fake[:h].float() - other.float()).abs().mean((1, 2, 3))
        noise = (z[:h] - other_z).abs().mean(1)
        return -(image / noise).mean().clamp(max=DIVERSITY_CAP)

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One update; returns the losses as 0-d tensors (reading them waits for the device)."""
        b = batch.images.shape[0]
        z = torch.randn(b, self.G.config.z_dim, device=batch.images.device)

        # discriminator: hinge on real vs fake, aux heads learn attributes from real photos only
        self.opt_d.zero_grad(set_to_none=True)
        with self.autocast:
            with torch.no_grad():
                fake = self.G(z, batch.conditions)
            d_loss, d_aux = _d_loss(self.D, self.w, batch, fake, batch.conditions, self.anchors)
        d_loss.backward()
        self.opt_d.step()

        # generator: fool D, and make D's heads read the requested attributes
        self.opt_g.zero_grad(set_to_none=True)
        with self.autocast:
            fake = self.G(z, batch.conditions)
            with _frozen(self.D):
                fake_score, fake_aux = _judge(self.D, self.w, fake, batch.conditions)
            g_adv = g_adversarial(self.w.adversarial, fake_score)
            g_aux = _aux_loss(fake_aux, batch.labels)
            g_kl = self.G.cond.kl
            g_loss = g_adv + self.w.aux * g_aux + self.w.kl_cond * g_kl
            if self.w.diversity > 0:
                g_loss = g_loss + self.w.diversity * self._diversity(z, fake, batch.conditions)
        g_loss.backward()
        self.opt_g.step()
        return {
            k: v.detach()
            for k, v in {"d_loss": d_loss, "g_loss": g_loss, "d_aux": d_aux, "g_aux": g_aux}.items()
        }

    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D} | _named(self.anchors)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}


class VAELoss:
    """One step = one update of encoder and decoder on reconstruction + beta * KL.

    With a classifier C (weights.prior_aux > 0): C learns the attributes from the batch's real
    photos, and the decoder is also asked that C read its prior samples (what a render draws: the
    generator's latent prior, fitted to the encoder's codes as it trains) as the batch's
    attributes (AC-GAN's auxiliary loss, without a discriminator).
    C sees both through DiffAugment (weights.augment), so a pixel-exact trick does not fool it.
    With weights.prior_adv > 0, from weights.adv_start on C also learns to tell the photos from
    prior samples for the same rows (its attribute heads still from photos only), and the decoder
    is asked to fool it. With weights.recon_adv > 0 the same, with the photos' reconstructions in
    place of prior samples and the decoder's term balanced against the pixel loss (VQGAN's).
    With a patch discriminator P (weights.patch_adv > 0), from adv_start on P learns to tell the
    photos' small patches from their reconstructions' and the decoder is asked to fool it, balanced
    the same way: pix2pix's split, the pixel loss for the low frequencies and a judge of local
    texture for the high ones a pixel loss averages out.
    """

    def __init__(
        self,
        decoder: Generator,
        encoder: VAEEncoder,
        opt: torch.optim.Optimizer,
        weights: LossWeights,
        autocast: AbstractContextManager | None = None,
        classifier: nn.Module | None = None,
        opt_c: torch.optim.Optimizer | None = None,
        patches: nn.Module | None = None,
        opt_p: torch.optim.Optimizer | None = None,
    ) -> None:
        self.G, self.E, self.opt, self.w = decoder, encoder, opt, weights
        self.C, self.opt_c = classifier, opt_c
        self.P, self.opt_p = patches, opt_p
        self.autocast = autocast or nullcontext()
        if weights.lecam > 0 and (classifier is None or weights.prior_adv == weights.recon_adv == 0):
            raise ValueError(
                "lecam regularises a discriminator; the cVAE's classifier is one only with "
                "prior_adv or recon_adv (the patch discriminator takes none): set one of them, "
                "or lecam to 0"
            )
        self.anchors = _lecam(weights, classifier)

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One update; returns the losses as 0-d tensors (reading them waits for the device)."""
        out: dict[str, torch.Tensor] = {}
        # the classifier's update and its terms in the decoder's loss run every classifier_every-th
        # step, those terms scaled up to match (lazy, as R1 is: StyleGAN2's lazy regularisation)
        classify = self.C is not None and batch.step % self.w.classifier_every == 0
        started = classify and batch.step >= self.w.adv_start
        judge_prior, judge_recon = started and self.w.prior_adv > 0, started and self.w.recon_adv > 0
        judge_patch = (  # from adv_start, on every patch_every-th step (lazy as the classifier)
            self.P is not None and batch.step >= self.w.adv_start and batch.step % self.w.patch_every == 0
        )
        recon_first = judge_recon or judge_patch  # C / P learn from the reconstructions, detached
        # one pass of prior samples for both updates: C learns from them detached, and the
        # decoder's loss below goes through them (C's update does not touch the decoder's graph)
        if judge_prior:
            noise = torch.randn(len(batch.images), self.G.config.noise_dim, device=batch.images.device)
            with self.autocast:
                prior = _prior_samples(self.G, noise, batch.conditions)
        if recon_first:
            mu, logvar, z, recon = self._reconstruct(batch)
        if judge_patch:
            self.opt_p.zero_grad(set_to_none=True)
            with self.autocast:  # one pass for both kinds: P has no batch statistics to mix
                real, fake = self.P(torch.cat([batch.images, recon.detach()])).chunk(2)
                out["p_loss"] = d_adversarial(self.w.adversarial, real, fake)
            out["p_loss"].backward()
            self.opt_p.step()
        if classify:
            self.opt_c.zero_grad(set_to_none=True)
            with self.autocast:
                if judge_prior or judge_recon:
                    fake = prior if judge_prior else recon.detach()
                    cond = batch.conditions
                    c_loss, out["c_aux"] = _d_loss(self.C, self.w, batch, fake, cond, self.anchors)
                else:
                    c_loss = out["c_aux"] = _photo_attributes(self.C, self.w, batch)
            c_loss.backward()
            self.opt_c.step()
        self.opt.zero_grad(set_to_none=True)
        if not recon_first:
            mu, logvar, z, recon = self._reconstruct(batch)
        with self.autocast:
            # per-image sums: a Gaussian likelihood whose scale suits [-1, 1] pixels
            rec = F.l1_loss(recon.float(), batch.images, reduction="none").sum((1, 2, 3)).mean()
            kl = _vae_kl(mu, logvar)
            loss = rec + self.w.kl_vae * kl + self.w.kl_cond * self.G.cond.kl
            if self.G.detail is not None:
                out["kl_detail"] = self.G.detail.kl
                loss = loss + self.w.kl_detail * out["kl_detail"]
            if self.G.prior is not None:
                out["prior_nll"] = _learn_prior(self.G, z, batch.conditions)
                loss = loss + out["prior_nll"]
            if classify:
                if not judge_prior:
                    noise = torch.randn(len(mu), self.G.config.noise_dim, device=mu.device)
                    prior = _prior_samples(self.G, noise, batch.conditions)
                with _frozen(self.C):
                    score, aux = _judge(self.C, self.w, prior, batch.conditions)
                    if judge_recon:
                        score = _judge(self.C, self.w, recon, batch.conditions)[0]
                out["g_aux"] = _aux_loss(aux, batch.labels)
                lazy = self.w.classifier_every
                loss = loss + lazy * self.w.prior_aux * out["g_aux"]
                if judge_prior or judge_recon:
                    out["g_adv"] = g_adversarial(self.w.adversarial, score)
                    weight = self.w.prior_adv
                    if judge_recon:
                        out["adv_weight"] = self._balanced(rec, out["g_adv"])
                        weight = self.w.recon_adv * out["adv_weight"]
                    loss = loss + lazy * weight * out["g_adv"]
            if judge_patch:
                with _frozen(self.P):
                    out["g_patch"] = g_adversarial(self.w.adversarial, self.P(recon))
                # one pass back through P, to the reconstruction: the balance and the update
                # below both start from its gradient there (not two passes, one each)
                (pull,) = torch.autograd.grad([out["g_patch"]], [recon])
                out["patch_weight"] = self._balanced(rec, recon, pull)
                weight = self.w.patch_adv * self.w.patch_every * out["patch_weight"]
                loss = loss + weight * (out["g_patch"].detach() + _pulled(recon, pull))
        loss.backward()  # C and P were frozen for it: the decoder's loss never trains them
        self.opt.step()
        return {k: v.detach() for k, v in {"loss": loss, "recon": rec, "kl": kl, **out}.items()}

    def _reconstruct(self, batch: Batch):
        """(mu, logvar, the code drawn, the reconstruction) of the batch's photos."""
        with self.autocast:
            mu, logvar, *photo = self.E(batch.images, batch.conditions, detail=self.G.detail is not None)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            self.G.latent.observe(mu, logvar)
            return mu, logvar, z, self.G.decode(z, batch.conditions, photo=photo[0] if photo else None)

    def _balanced(
        self, rec: torch.Tensor, adv: torch.Tensor, pull: torch.Tensor | None = None
    ) -> torch.Tensor:
        """VQGAN's adaptive weight: how much the adversarial term must be scaled for its gradient
        at the decoder's last layer to match the pixel loss's (a constant: nothing trains through it).
        adv: the adversarial term; or, with `pull`, the image whose gradient from that term it is."""
        last = self.G.out.weight
        g_rec = torch.autograd.grad([rec], [last], retain_graph=True)[0]
        grads = None if pull is None else [pull]
        g_adv = torch.autograd.grad([adv], [last], grad_outputs=grads, retain_graph=True)[0]
        return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0, 1e4).detach()

    def networks(self) -> dict[str, nn.Module]:
        classifier = {"C": self.C} if self.C is not None else {}
        patches = {"P": self.P} if self.P is not None else {}
        return {"G": self.G, "E": self.E} | classifier | patches | _named(self.anchors)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        patches = {"opt_p": self.opt_p} if self.opt_p is not None else {}
        return {"opt": self.opt} | ({"opt_c": self.opt_c} if self.opt_c is not None else {}) | patches


class VAEGANLoss:
    """One step = one discriminator update on (real | reconstruction, prior sample), then one
    encoder+decoder update on pixels, features, KL and the adversarial term."""

    def __init__(
        self,
        decoder: Generator,
        encoder: VAEEncoder,
        discriminator: Discriminator,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
        weights: LossWeights,
        autocast: AbstractContextManager | None = None,
    ) -> None:
        self.G, self.E, self.D, self.opt_g, self.opt_d, self.w = (
            decoder,
            encoder,
            discriminator,
            opt_g,
            opt_d,
            weights,
        )
        self.autocast = autocast or nullcontext()
        self.anchors = _lecam(weights, discriminator)

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One update; returns the losses as 0-d tensors (reading them waits for the device)."""
        x, cond, kind = batch.images, batch.conditions, self.w.adversarial
        adversarial = batch.step >= self.w.adv_start
        z_prior = torch.randn(x.shape[0], self.G.config.z_dim, device=x.device)
        with self.autocast:
            mu, logvar = self.E(x, cond)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            self.G.latent.observe(mu, logvar)
            codes = torch.cat([z, self.G.codes(z_prior, cond).detach()])
            recon, prior = self.G.decode(codes, torch.cat([cond, cond])).chunk(2)

            self.opt_d.zero_grad(set_to_none=True)
            if adversarial:  # real photos against both kinds of generated image
                fakes, conds = torch.cat([prior, recon]), torch.cat([cond, cond])
                d_loss, _ = _d_loss(self.D, self.w, batch, fakes, conds, self.anchors)
            else:  # before: D learns only the attributes, from photos (the cVAE's classifier)
                d_loss = self.w.aux * _photo_attributes(self.D, self.w, batch)
        if d_loss.requires_grad:
            d_loss.backward()
            self.opt_d.step()

        # encoder and decoder: the cVAE's objective, D's heads, and (once adversarial) D's
        # features and fooling D
        self.opt_g.zero_grad(set_to_none=True)
        with self.autocast, _frozen(self.D):
            rec = F.l1_loss(recon.float(), x, reduction="none").sum((1, 2, 3)).mean()
            kl = _vae_kl(mu, logvar)
            both = torch.cat([recon, prior])
            score, aux = _judge(self.D, self.w, both, torch.cat([cond, cond]))
            g_aux = _aux_loss(aux, {k: torch.cat([v, v]) for k, v in batch.labels.items()})
            g_loss = (
                self.w.recon * rec + self.w.kl_vae * kl + self.w.prior_aux * g_aux
                + self.w.kl_cond * self.G.cond.kl
            )  # fmt: skip
            prior_nll = torch.zeros((), device=x.device)
            if self.G.prior is not None:
                prior_nll = _learn_prior(self.G, z, cond)
                g_loss = g_loss + prior_nll
            fm = g_adv = torch.zeros((), device=x.device)
            if adversarial:
                with torch.no_grad():
                    target = self.D.feature_map(x).float()
                fm = F.mse_loss(self.D.feature_map(recon).float(), target, reduction="none")
                fm = fm.sum((1, 2, 3)).mean()
                g_adv = g_adversarial(kind, score)
                g_loss = g_loss + self.w.feature_match * fm + self.w.adv * g_adv
        g_loss.backward()
        self.opt_g.step()
        losses = {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "recon": rec,
            "kl": kl,
            "feature_match": fm,
            "g_adv": g_adv,
            "g_aux": g_aux,
            "prior_nll": prior_nll,
        }
        return {k: v.detach() for k, v in losses.items()}

    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G, "E": self.E, "D": self.D} | _named(self.anchors)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}


class CycleLoss:
    """One step = one discriminator update on real photos vs translations, then one translator
    update on the adversarial term, the colour head, cycle consistency and identity.

    The batch's conditions are each photo's own colour (sRGB in [-1, 1]) and its labels the
    colour classes; targets are drawn from the batch's own colours, shuffled.
    """

    def __init__(
        self,
        translator: nn.Module,
        discriminator: Discriminator,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
        *,
        cycle: float = 10.0,
        identity: float = 5.0,
        aux: float = 1.0,
    ) -> None:
        self.T, self.D, self.opt_g, self.opt_d = translator, discriminator, opt_g, opt_d
        self.cycle, self.identity, self.aux = cycle, identity, aux

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, own, colour = batch.images, batch.conditions, batch.labels["color"]
        order = torch.randperm(len(x), device=x.device)
        target, target_colour = own[order], colour[order]
        fake = self.T(x, target)

        self.opt_d.zero_grad(set_to_none=True)
        real_score, real_logits = self.D(x, own)
        fake_score, _ = self.D(fake.detach(), target)
        d_loss = d_adversarial("hinge", real_score, fake_score) + self.aux * _aux_loss(
            real_logits, {"color": colour}
        )
        d_loss.backward()
        self.opt_d.step()

        self.opt_g.zero_grad(set_to_none=True)
        with _frozen(self.D):
            fake_score, fake_logits = self.D(fake, target)
        adv = g_adversarial("hinge", fake_score)
        cls = _aux_loss(fake_logits, {"color": target_colour})
        cyc = F.l1_loss(self.T(fake, own), x)
        idt = F.l1_loss(self.T(x, own), x)
        g_loss = adv + self.aux * cls + self.cycle * cyc + self.identity * idt
        g_loss.backward()
        self.opt_g.step()
        losses = {"d": d_loss, "g": g_loss, "cycle": cyc, "identity": idt, "colour": cls}
        return {k: v.detach() for k, v in losses.items()}

    def networks(self) -> dict[str, nn.Module]:
        return {"T": self.T, "D": self.D}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}
