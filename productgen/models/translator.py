"""An unpaired colour translator, trained CycleGAN-style (Zhu et al. 2017), one network for every
colour domain (as StarGAN, Choi et al. 2018, does for many domains):

    photo (B, 3, S, S), target colour sRGB in [-1, 1] (B, 3) -> the photo in that colour

An encoder (two stride-2 convolutions), residual blocks whose norms take their scale and shift
from the target colour, and a decoder back to the photo's size. `losses.CycleLoss` trains it with
a projection discriminator (conditioned on the colour an image shows), an auxiliary colour head
trained on the train split's photos, cycle consistency and identity. Compared with the model's
own encoder and decoder in README ("Colour variants"): productgen.variants ships the better.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ColourTranslator"]


class _ColourNorm(nn.Module):
    """InstanceNorm whose scale and shift come from the target colour."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.film = nn.Linear(3, 2 * channels)

    def forward(self, x: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        gain, bias = self.film(rgb)[:, :, None, None].chunk(2, dim=1)
        return self.norm(x) * (1 + gain) + bias


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.n1, self.c1 = _ColourNorm(channels), nn.Conv2d(channels, channels, 3, padding=1)
        self.n2, self.c2 = _ColourNorm(channels), nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.relu(self.n1(x, rgb)))
        return x + self.c2(F.relu(self.n2(h, rgb)))


class ColourTranslator(nn.Module):
    """(photo (B, 3, S, S) in [-1, 1], target sRGB (B, 3) in [-1, 1]) -> (B, 3, S, S) in [-1, 1]."""

    def __init__(self, channels: int = 32, blocks: int = 4) -> None:
        super().__init__()
        c = channels
        self.down = nn.Sequential(
            nn.Conv2d(6, c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 4, 2, 1), nn.InstanceNorm2d(2 * c), nn.ReLU(),
            nn.Conv2d(2 * c, 4 * c, 4, 2, 1), nn.InstanceNorm2d(4 * c), nn.ReLU(),
        )  # fmt: skip
        self.blocks = nn.ModuleList(_Residual(4 * c) for _ in range(blocks))
        self.up = nn.Sequential(
            nn.ConvTranspose2d(4 * c, 2 * c, 4, 2, 1), nn.InstanceNorm2d(2 * c), nn.ReLU(),
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.InstanceNorm2d(c), nn.ReLU(),
        )  # fmt: skip
        self.out = nn.Conv2d(c + 3, 3, 3, padding=1)  # sees the photo again: detail skips the bottleneck

    def forward(self, x: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        plane = rgb[:, :, None, None].expand(-1, -1, *x.shape[2:])
        h = self.down(torch.cat([x, plane], dim=1))
        for block in self.blocks:
            h = block(h, rgb)
        return torch.tanh(self.out(torch.cat([self.up(h), x], dim=1)))
