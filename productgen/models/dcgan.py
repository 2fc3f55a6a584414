"""DCGAN (Radford, Metz & Chintala 2016): the plain baseline every results table starts from.

Generator: the condition code joins the noise at the input, then strided transposed convolutions
with BatchNorm and ReLU. Discriminator: strided convolutions with leaky ReLU (no BatchNorm, so
every loss option applies, WGAN-GP's gradient penalty included), and the projection term the
other families use: one condition path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from productgen.models.networks import CondProjection, ModelConfig, channels

__all__ = ["DCGANDiscriminator", "DCGANGenerator"]


class DCGANGenerator(nn.Module):
    """(z (B, z_dim), cond (B, cond_in)) -> image (B, 3, S, S) in [-1, 1]; psi < 1 truncates z."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        ch = channels(config.g_ch, config.levels)
        self.cond = CondProjection(config.cond_in, config.cond_dim, config.cond_augment)
        self.stem = nn.Sequential(
            nn.ConvTranspose2d(config.z_dim + config.cond_dim, ch[0], 4), nn.BatchNorm2d(ch[0]), nn.ReLU()
        )
        layers: list[nn.Module] = []
        for i in range(config.levels):
            layers += [nn.ConvTranspose2d(ch[i], ch[i + 1], 4, 2, 1), nn.BatchNorm2d(ch[i + 1]), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(ch[-1], 3, 3, padding=1)

    def forward(self, z: torch.Tensor, cond: torch.Tensor, psi: float = 1.0) -> torch.Tensor:
        x = torch.cat([z * psi, self.cond(cond)], dim=1)[:, :, None, None]  # (B, z + code, 1, 1)
        return torch.tanh(self.out(self.body(self.stem(x))))


class DCGANDiscriminator(nn.Module):
    """(image, cond) -> (score (B,), aux logits), the interface of `networks.Discriminator`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        ch = list(reversed(channels(config.d_ch, config.levels)))
        layers: list[nn.Module] = [nn.Conv2d(3, ch[0], 4, 2, 1), nn.LeakyReLU(0.2)]
        for i in range(config.levels - 1):
            layers += [nn.Conv2d(ch[i], ch[i + 1], 4, 2, 1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)  # (B, width, 4, 4)
        width = ch[config.levels - 1]
        self.linear = nn.Linear(width * 16, 1)
        self.embed = nn.Linear(config.cond_in, width)
        self.aux = nn.ModuleDict({name: nn.Linear(width * 16, k) for name, k in config.aux_classes.items()})

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h = self.features(x)
        flat = h.flatten(1)
        pooled = F.leaky_relu(h, 0.2).sum(dim=(2, 3))
        score = self.linear(flat).squeeze(1) + (self.embed(cond) * pooled).sum(1)
        return score, {name: head(flat) for name, head in self.aux.items()}

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
