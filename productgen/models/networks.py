"""The networks: a conditional generator, a projection discriminator and a VAE encoder.

Conditioning enters in one place: `CondProjection` maps the condition vector (text embeddings,
per-field embeddings, explicit colour) to a learned code shared by every generator layer.
The discriminator's projection term follows Miyato & Koyama 2018, "cGANs with Projection
Discriminator"; optional auxiliary heads (Odena et al. 2017, AC-GAN) classify the catalog's
structured attributes so the generator is pushed to render them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from productgen.models.layers import DownBlock, UpBlock, sn

__all__ = [
    "FAMILIES",
    "CondProjection",
    "ConditionalPrior",
    "DetailLatent",
    "Discriminator",
    "Generator",
    "LatentPrior",
    "ModelConfig",
    "PatchDiscriminator",
    "VAEEncoder",
    "channels",
]


# The model families (productgen.models.FAMILY_NETWORKS builds each)
FAMILIES = ("cgan", "cvae", "vaegan", "stylegan", "dcgan")

# Ranges a config read from a file must keep: wide enough for any model we train, narrow enough
# that building the networks cannot exhaust memory.
_BOUNDS = {
    "image_size": (8, 1024), "cond_in": (1, 65_536), "cond_dim": (1, 4096), "z_dim": (1, 4096),
    "g_ch": (1, 1024), "d_ch": (1, 1024), "prior_components": (0, 64), "detail_ch": (0, 16),
}  # fmt: skip
# Keys added after models were first saved: a model file without one was built with this value.
_ADDED_LATER = {"prior_components": 0, "detail_ch": 0, "pixel_noise": False}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the networks; saved with every checkpoint."""

    family: str = "cgan"  # one of FAMILIES
    image_size: int = 32
    cond_in: int = 384  # length of the condition vector given to the networks
    cond_dim: int = 128  # learned shared code
    z_dim: int = 64
    g_ch: int = 32
    d_ch: int = 32
    cond_augment: bool = True  # StackGAN conditioning augmentation (Zhang et al. 2017)
    aux_classes: dict[str, int] = field(default_factory=dict)  # attribute -> number of classes
    # the VAEs' render codes: > 0, a mixture of this many Gaussians given the condition
    # (ConditionalPrior); 0, one Gaussian for every row (LatentPrior)
    prior_components: int = 0
    # the cVAE's second, spatial code (DetailLatent): this many channels at 8 x 8; 0: none
    detail_ch: int = 0
    # the decoder's noise inputs (StyleGAN's): a per-pixel noise map after every convolution of
    # its up-blocks, read from a render's noise values after the codes'
    pixel_noise: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"model family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        for name, (low, high) in _BOUNDS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}")
        if math.log2(self.image_size) != int(math.log2(self.image_size)):
            raise ValueError(f"image size must be a power of two from 8 to 1024, got {self.image_size}")
        if self.prior_components and self.family not in ("cvae", "vaegan"):
            raise ValueError("prior_components needs an encoder's codes to learn from: cvae or vaegan")
        if self.detail_ch and self.family != "cvae":
            raise ValueError("detail_ch is the cVAE's: its prior learns from the encoder's photos")
        for name in ("cond_augment", "pixel_noise"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.pixel_noise and self.family not in ("cgan", "cvae", "vaegan"):
            raise ValueError("pixel_noise is the BigGAN-style generator's: cgan, cvae or vaegan")
        if not isinstance(self.aux_classes, dict) or len(self.aux_classes) > 16:
            raise ValueError("aux_classes must map at most 16 attribute names to class counts")
        for name, classes in self.aux_classes.items():
            if not isinstance(name, str) or not isinstance(classes, int) or not 2 <= classes <= 100_000:
                raise ValueError(f"aux_classes[{name!r}] must be a class count from 2 to 100000")

    @classmethod
    def from_json(cls, content: object) -> ModelConfig:
        """A config from untrusted JSON: exactly the known keys, each of the right type and range."""
        if not isinstance(content, dict):
            raise ValueError("model_config must be a JSON object")
        known = {f.name for f in fields(cls)}
        content = {**_ADDED_LATER, **content}
        unknown, missing = sorted(set(content) - known), sorted(known - set(content))
        if unknown or missing:
            raise ValueError(f"model_config has unknown keys {unknown} or lacks {missing}")
        return cls(**content)

    @property
    def levels(self) -> int:
        return int(math.log2(self.image_size // 4))

    @property
    def noise_dim(self) -> int:
        """How many N(0, I) values one image is drawn from: the code's, the detail code's, then the
        noise inputs' maps (two per up-block, at its output size)."""
        return self.z_dim + self.detail_dim + sum(self.pixel_noise_sizes)

    @property
    def detail_dim(self) -> int:
        """How many noise values the detail code reads (0 without one)."""
        return self.detail_ch * DetailLatent.SIZE**2

    @property
    def pixel_noise_sizes(self) -> list[int]:
        """How many noise values each up-block reads (none without noise inputs)."""
        return [2 * (8 << i) ** 2 for i in range(self.levels)] if self.pixel_noise else []

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class CondProjection(nn.Module):
    """Condition vector (B, cond_in) -> shared code (B, cond_dim), with optional Gaussian jitter.

    With conditioning augmentation the code is sampled from N(mu, sigma) around the projection
    during training (mu at eval), which smooths the text manifold; `kl` is its regulariser.
    """

    def __init__(self, cond_in: int, cond_dim: int, augment: bool) -> None:
        super().__init__()
        self.augment = augment
        self.proj = nn.Linear(cond_in, cond_dim * (2 if augment else 1))
        self.kl = torch.zeros(())

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        h = self.proj(cond)
        if not self.augment:
            return F.leaky_relu(h, 0.2)
        mu, logvar = h.chunk(2, dim=1)
        mu = F.leaky_relu(mu, 0.2)
        logvar = logvar.clamp(-8, 4)
        self.kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        if not self.training:
            return mu
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp()


class LatentPrior(nn.Module):
    """What a render's latent code is drawn from: N(mean, scale scale^T), made from N(0, I) noise.

    A VAE's decoder learns only the codes its encoder gives photos (the aggregate posterior),
    which the KL term pulls towards N(0, I) but does not put on it; drawing renders from that
    distribution's own moments rather than from N(0, I) is Ghosh et al. 2020's ex-post density
    estimation ("From Variational to Deterministic Autoencoders"). `observe` follows the moments
    over training batches, so the decoder's prior samples in training are drawn as renders are.
    Until something observes it (the GAN families never do) it is N(0, I) exactly.
    """

    def __init__(self, z_dim: int, momentum: float = 0.01) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("mean", torch.zeros(z_dim))
        self.register_buffer("scale", torch.eye(z_dim))  # lower-triangular Cholesky factor

    @torch.no_grad()
    def observe(self, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        """Move the moments towards a batch's posteriors N(mu, exp(logvar)), each (B, z_dim)."""
        mu, var = mu.detach().double(), logvar.detach().double().exp()
        mean, scale = self.mean.double(), self.scale.double()
        second = scale @ scale.T + torch.outer(mean, mean)  # E[z z^T] so far
        batch_second = mu.T @ mu / len(mu) + torch.diag(var.mean(0))
        mean = mean.lerp(mu.mean(0), self.momentum)
        second = second.lerp(batch_second, self.momentum)
        jitter = 1e-6 * torch.eye(len(mean), dtype=mean.dtype, device=mean.device)
        self.mean.copy_(mean)
        # cholesky_ex: the plain call checks its result on the host, a GPU sync every step; the
        # covariance is positive definite by construction (posterior variances plus the jitter)
        self.scale.copy_(torch.linalg.cholesky_ex(second - torch.outer(mean, mean) + jitter).L)

    def forward(self, noise: torch.Tensor, psi: float = 1.0) -> torch.Tensor:
        """Codes (B, z_dim) for noise (B, z_dim); psi < 1 pulls them towards the mean."""
        with torch.autocast(noise.device.type, enabled=False):  # noise keeps full precision
            return self.mean + psi * (noise.float() @ self.scale.T)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # models saved before the prior existed drew from N(0, I): load them as exactly that
        for name, value in self.named_buffers():
            state_dict.setdefault(prefix + name, value)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class ConditionalPrior(nn.Module):
    """What a render's code is drawn from given its row: a mixture of Gaussians p(z | condition).

    The codes an encoder gives photos depend on the row far more than their mean shows: a sandal's
    codes and a coat's sit in differently shaped regions, and a title's words ("strappy", "ankle")
    narrow them further. A small mixture density network (Bishop 1994) learns that distribution
    from the encoder's codes, detached, by maximum likelihood (`nll`): Ghosh et al. 2020's ex-post
    density estimation, given the condition, the role of Sohn et al. 2015's conditional prior
    network. A render turns its noise into a code without extra randomness: the last noise value
    picks the component by the inverse CDF of the mixture weights, and what is left of it inside
    the picked interval, uniform again and independent of the pick, becomes that value anew.
    """

    def __init__(self, cond_in: int, z_dim: int, components: int, hidden: int = 256) -> None:
        super().__init__()
        self.components, self.z_dim = components, z_dim
        self.body = nn.Sequential(nn.Linear(cond_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.head = nn.Linear(hidden, components * (1 + 2 * z_dim))

    def mixture(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log weights (B, K), means (B, K, z), log standard deviations (B, K, z))."""
        with torch.autocast(cond.device.type, enabled=False):  # densities keep full precision
            out = self.head(self.body(cond.float()))
        k, z = self.components, self.z_dim
        logits, mean, log_sd = out.split([k, k * z, k * z], dim=1)
        return logits.log_softmax(1), mean.view(-1, k, z), log_sd.view(-1, k, z).clamp(-7, 3)

    def nll(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood (nats per code) of codes (B, z) given their conditions."""
        log_w, mean, log_sd = self.mixture(cond)
        scaled = (z.float()[:, None] - mean) / log_sd.exp()
        log_normal = (-0.5 * scaled.pow(2) - log_sd).sum(2) - 0.5 * self.z_dim * math.log(2 * math.pi)
        return -(log_w + log_normal).logsumexp(1).mean()

    def forward(self, noise: torch.Tensor, cond: torch.Tensor, psi: float = 1.0) -> torch.Tensor:
        """Codes (B, z_dim) for N(0, I) noise (B, z_dim); psi < 1 pulls each to its component's mean."""
        log_w, mean, log_sd = self.mixture(cond)
        weight, noise = log_w.exp(), noise.float()
        u = torch.special.ndtr(noise[:, -1:]).clamp(1e-7, 1 - 1e-7)  # (B, 1) uniform
        upper = weight.cumsum(1)
        pick = torch.searchsorted(upper, u).clamp(max=self.components - 1)  # (B, 1)
        width = weight.gather(1, pick)
        left = ((u - upper.gather(1, pick) + width) / width).clamp(1e-6, 1 - 1e-6)  # uniform again
        noise = torch.cat([noise[:, :-1], torch.special.ndtri(left)], dim=1)
        rows = torch.arange(len(noise), device=noise.device)
        k = pick.squeeze(1)
        return mean[rows, k] + psi * log_sd[rows, k].exp() * noise


class DetailLatent(nn.Module):
    """A second code, spatial, for what one code per image cannot carry: a print, a knit, where
    the laces run. A two-level top-down VAE in miniature (Sonderby et al. 2016, "Ladder Variational
    Autoencoders"; Vahdat & Kautz 2020, NVAE): at 8 x 8 the decoder's features, which already know
    the item's code and row, give a Gaussian prior per position; in training the posterior also
    sees the encoder's features of the photo at 8 x 8, and `kl` is its KL to that prior (nats per
    image). Both read their inputs normalised: the networks after them normalise (BatchNorm), so
    the scale of those features is free to drift, and densities read from a drifting scale
    diverged (measured). The code enters the features through a convolution that starts at zero,
    so a model starts as the one-code decoder. Out of training the posterior is its mean; a render
    draws from the prior with its own noise values.
    """

    SIZE = 8

    def __init__(self, channels: int, photo_channels: int, detail_ch: int) -> None:
        super().__init__()
        self.detail_ch = detail_ch
        self.prior = nn.Conv2d(channels, 2 * detail_ch, 3, padding=1)
        self.posterior = nn.Conv2d(channels + photo_channels, 2 * detail_ch, 3, padding=1)
        self.inject = nn.Conv2d(detail_ch, channels, 3, padding=1)
        nn.init.zeros_(self.inject.weight)
        nn.init.zeros_(self.inject.bias)
        self.kl = torch.zeros(())

    @staticmethod
    def _gaussian(conv: nn.Conv2d, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log sd), each (B, detail_ch, 8, 8), in full precision: the KL divides by the sd."""
        with torch.autocast(h.device.type, enabled=False):
            mean, log_sd = conv(h).chunk(2, dim=1)
        return mean, log_sd.clamp(-4, 2)

    def forward(
        self,
        h: torch.Tensor,
        noise: torch.Tensor | None = None,
        photo: torch.Tensor | None = None,
        psi: float = 1.0,
    ) -> torch.Tensor:
        """Features h (B, C, 8, 8) with the detail code added. With `photo` (the encoder's 8 x 8
        features) the code comes from the posterior; else from the prior, with `noise`
        (B, detail_ch * 64) N(0, I) values scaled by psi, or its mean when there is none."""
        read = F.group_norm(h.float(), 1)
        mean, log_sd = self._gaussian(self.prior, read)
        if photo is not None:
            seen = torch.cat([read, F.group_norm(photo.float(), 1)], dim=1)
            q_mean, q_log_sd = self._gaussian(self.posterior, seen)
            code = q_mean + q_log_sd.exp() * torch.randn_like(q_mean) if self.training else q_mean
            ratio = (q_log_sd - log_sd).exp().pow(2) + ((q_mean - mean) / log_sd.exp()).pow(2)
            self.kl = (0.5 * (ratio - 1) - (q_log_sd - log_sd)).sum((1, 2, 3)).mean()
        elif noise is None:
            code = mean
        else:  # a draw is not trained through: the prior learns from the posterior only (kl)
            noise = noise.float().view(len(h), self.detail_ch, self.SIZE, self.SIZE)
            code = (mean + psi * log_sd.exp() * noise).detach()
        return h + self.inject(code.to(h.dtype))


def channels(base: int, levels: int) -> list[int]:
    # widest at 4x4, halving per level: 32 px, base 32 -> [256, 128, 64, 32]
    return [base * min(2 ** (levels - i), 8) for i in range(levels + 1)]


class Generator(nn.Module):
    """(noise (B, noise_dim), cond (B, cond_in)) -> image (B, 3, S, S) in [-1, 1]; psi < 1 truncates.

    Noise becomes a latent code through `latent` (N(0, I) unless a VAE fitted it); `decode` takes
    a code as it is (the VAE's reconstructions of encoded photos).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        ch = channels(config.g_ch, config.levels)
        self.cond = CondProjection(config.cond_in, config.cond_dim, config.cond_augment)
        block_cond = config.cond_dim + config.z_dim  # BigGAN: shared code and noise feed every CBN
        self.stem = nn.Linear(block_cond, ch[0] * 16)
        self.blocks = nn.ModuleList(
            UpBlock(ch[i], ch[i + 1], block_cond, noise=config.pixel_noise) for i in range(config.levels)
        )
        self.out_bn = nn.BatchNorm2d(ch[-1])
        self.out = nn.Conv2d(ch[-1], 3, 3, padding=1)
        self.latent = LatentPrior(config.z_dim)
        self.prior = (
            ConditionalPrior(config.cond_in, config.z_dim, config.prior_components)
            if config.prior_components
            else None
        )
        self.detail = (
            DetailLatent(ch[1], encoder_channels(config)[config.levels - 1], config.detail_ch)
            if config.detail_ch
            else None
        )

    def forward(self, noise: torch.Tensor, cond: torch.Tensor, psi: float = 1.0) -> torch.Tensor:
        """Images for noise (B, config.noise_dim): the code's values, the detail code's, the maps'."""
        return self.decode(self.codes(noise, cond, psi), cond, noise[:, self.config.z_dim :], psi=psi)

    def codes(self, noise: torch.Tensor, cond: torch.Tensor, psi: float = 1.0) -> torch.Tensor:
        """A render's latent code for its noise (its first z_dim values) and condition; psi < 1:
        truncation towards the mean."""
        noise = noise[:, : self.config.z_dim]
        return self.latent(noise, psi) if self.prior is None else self.prior(noise, cond, psi)

    def decode(
        self,
        z: torch.Tensor,
        cond: torch.Tensor,
        noise: torch.Tensor | None = None,
        *,
        photo: torch.Tensor | None = None,
        psi: float = 1.0,
    ) -> torch.Tensor:
        """A latent code (B, z_dim) and its condition -> image. `noise` holds a render's values
        after the code's (B, noise_dim - z_dim): the detail code's, then the noise maps'.
        With a detail code (DetailLatent), `photo`, the encoder's features of a photo, gives it;
        else its noise values, or the prior's mean when there are none. Without noise values the
        noise inputs draw their maps in training and add none out of it."""
        cut = self.config.detail_dim
        detail, maps = (None, None) if noise is None else (noise[:, :cut], noise[:, cut:])
        sizes = self.config.pixel_noise_sizes
        if sizes and (maps is None or not maps.numel()):
            maps = torch.randn(len(z), sum(sizes), device=z.device) if self.training else None
        c = torch.cat([self.cond(cond), z], dim=1)
        h = self.stem(c).view(z.shape[0], -1, 4, 4)  # (B, ch0, 4, 4)
        per_block = maps.split(sizes, dim=1) if sizes and maps is not None else [None] * len(self.blocks)
        for i, (block, block_maps) in enumerate(zip(self.blocks, per_block, strict=True)):
            h = block(h, c, block_maps)  # doubles H, W
            if i == 0 and self.detail is not None:
                h = self.detail(h, detail if detail is not None and detail.numel() else None, photo, psi)
        return torch.tanh(self.out(F.relu(self.out_bn(h))))


class Discriminator(nn.Module):
    """(image (B, 3, S, S), cond (B, cond_in)) -> (score (B,), aux logits {attribute: (B, K)})."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        ch = list(reversed(channels(config.d_ch, config.levels)))  # 32 px, 32 -> [32, 64, 128, 256]
        blocks = [DownBlock(3, ch[0], first=True)]
        blocks += [DownBlock(ch[i], ch[i + 1]) for i in range(config.levels - 1)]
        blocks.append(DownBlock(ch[-2], ch[-1], down=False))
        self.blocks = nn.Sequential(*blocks)
        self.linear = sn(nn.Linear(ch[-1], 1))
        self.embed = sn(nn.Linear(config.cond_in, ch[-1]))  # projection term <embed(c), h>
        self.aux = nn.ModuleDict({name: sn(nn.Linear(ch[-1], k)) for name, k in config.aux_classes.items()})

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # (B, ch[-1]) global sum pooling
        score = self.linear(h).squeeze(1) + (self.embed(cond) * h).sum(1)
        return score, {name: head(h) for name, head in self.aux.items()}

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map before pooling (B, C, 4, 4): the VAE-GAN's feature-matching space."""
        return self.blocks(x)


class PatchDiscriminator(nn.Module):
    """image (B, 3, S, S) -> a realism score per patch (B, S/2 * S/2), each seeing 10 x 10 pixels:
    pix2pix's PatchGAN (Isola et al. 2017), whose answer to a pixel loss's blur is a judge of
    local texture only, the low frequencies left to the pixel loss."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        w = config.d_ch
        self.net = nn.Sequential(
            sn(nn.Conv2d(3, w, 3, padding=1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(w, 2 * w, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(2 * w, 2 * w, 3, padding=1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(2 * w, 1, 1)),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


def encoder_channels(config: ModelConfig) -> list[int]:
    """The encoder's widths, full size first: entry i is its output after i halvings."""
    return list(reversed(channels(config.d_ch, config.levels)))


class VAEEncoder(nn.Module):
    """(image (B, 3, S, S), cond (B, cond_in)) -> (mu, logvar), each (B, z_dim); with
    `detail=True` also its features at 8 x 8 (B, C, 8, 8), what a DetailLatent's posterior sees."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        ch = encoder_channels(config)
        layers: list[nn.Module] = [nn.Conv2d(3, ch[0], 3, padding=1)]
        for i in range(config.levels):
            layers += [nn.BatchNorm2d(ch[i]), nn.LeakyReLU(0.2), nn.Conv2d(ch[i], ch[i + 1], 4, 2, 1)]
        self.features = nn.Sequential(*layers)
        self.at_8 = 1 + 3 * (config.levels - 1)  # layers up to the 8 x 8 output
        self.head = nn.Linear(ch[-1] * 16 + config.cond_in, 2 * config.z_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, *, detail: bool = False):
        photo = self.features[: self.at_8](x)  # (B, C, 8, 8)
        h = self.features[self.at_8 :](photo).flatten(1)  # (B, ch[-1] * 4 * 4)
        mu, logvar = self.head(torch.cat([h, cond], dim=1)).chunk(2, dim=1)
        return (mu, logvar.clamp(-10, 10)) + ((photo,) if detail else ())
