"""The losses own the interplay of the networks; the training loop only calls `step`.

GAN: hinge loss (Lim & Ye 2017) with a projection discriminator, DiffAugment on both sides,
optional auxiliary attribute heads (AC-GAN), and the conditioning-augmentation KL term.
VAE: a conditional VAE (Sohn et al. 2015) whose decoder is the same conditional generator.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from productgen.models.augment import diff_augment
from productgen.models.networks import Discriminator, Generator, VAEEncoder

__all__ = ["Batch", "GANLoss", "LossWeights", "VAELoss"]


@dataclass
class Batch:
    """One training batch on the device: images in [-1, 1], conditions, attribute labels (-1 unknown)."""

    images: torch.Tensor  # (B, 3, S, S) float
    conditions: torch.Tensor  # (B, C)
    labels: dict[str, torch.Tensor]  # attribute -> (B,) int64


@dataclass(frozen=True)
class LossWeights:
    aux: float = 1.0  # auxiliary attribute classification (GAN)
    kl_cond: float = 1.0  # conditioning augmentation KL
    kl_vae: float = 1.0  # VAE latent KL (beta)
    augment: bool = True  # DiffAugment translation + cutout (GAN)


def _aux_loss(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> torch.Tensor:
    total = torch.zeros((), device=next(iter(labels.values())).device) if labels else torch.zeros(())
    for name, out in logits.items():
        target = labels[name]
        if (target >= 0).any():
            total = total + F.cross_entropy(out.float(), target, ignore_index=-1)
    return total


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

    def _d(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.D(diff_augment(x) if self.w.augment else x, cond)

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One update; returns the losses as 0-d tensors (reading them waits for the device)."""
        b = batch.images.shape[0]
        z = torch.randn(b, self.G.config.z_dim, device=batch.images.device)

        # discriminator: hinge on real vs fake, aux heads learn attributes from real photos only
        self.opt_d.zero_grad(set_to_none=True)
        with self.autocast:
            with torch.no_grad():
                fake = self.G(z, batch.conditions)
            real_score, real_aux = self._d(batch.images, batch.conditions)
            fake_score, _ = self._d(fake, batch.conditions)
            d_adv = F.relu(1 - real_score.float()).mean() + F.relu(1 + fake_score.float()).mean()
            d_aux = _aux_loss(real_aux, batch.labels)
            d_loss = d_adv + self.w.aux * d_aux
        d_loss.backward()
        self.opt_d.step()

        # generator: fool D, and make D's heads read the requested attributes
        self.opt_g.zero_grad(set_to_none=True)
        with self.autocast:
            fake = self.G(z, batch.conditions)
            fake_score, fake_aux = self._d(fake, batch.conditions)
            g_adv = -fake_score.float().mean()
            g_aux = _aux_loss(fake_aux, batch.labels)
            g_kl = self.G.cond.kl
            g_loss = g_adv + self.w.aux * g_aux + self.w.kl_cond * g_kl
        g_loss.backward()
        self.opt_g.step()
        return {
            k: v.detach()
            for k, v in {"d_loss": d_loss, "g_loss": g_loss, "d_aux": d_aux, "g_aux": g_aux}.items()
        }

    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}


class VAELoss:
    """One step = one update of encoder and decoder on reconstruction + beta * KL."""

    def __init__(
        self,
        decoder: Generator,
        encoder: VAEEncoder,
        opt: torch.optim.Optimizer,
        weights: LossWeights,
        autocast: AbstractContextManager | None = None,
    ) -> None:
        self.G, self.E, self.opt, self.w = decoder, encoder, opt, weights
        self.autocast = autocast or nullcontext()

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One update; returns the losses as 0-d tensors (reading them waits for the device)."""
        self.opt.zero_grad(set_to_none=True)
        with self.autocast:
            mu, logvar = self.E(batch.images, batch.conditions)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            recon = self.G(z, batch.conditions)
            # per-image sums: a Gaussian likelihood whose scale suits [-1, 1] pixels
            rec = F.l1_loss(recon.float(), batch.images, reduction="none").sum((1, 2, 3)).mean()
            kl = 0.5 * (mu.float().pow(2) + logvar.float().exp() - 1 - logvar.float()).sum(1).mean()
            loss = rec + self.w.kl_vae * kl + self.w.kl_cond * self.G.cond.kl
        loss.backward()
        self.opt.step()
        return {k: v.detach() for k, v in {"loss": loss, "recon": rec, "kl": kl}.items()}

    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G, "E": self.E}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}
