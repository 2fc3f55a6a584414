"""Building blocks: conditional BatchNorm and residual up/down blocks (BigGAN, SNGAN style).

Brock, Donahue & Simonyan 2019, "Large Scale GAN Training for High Fidelity Natural Image
Synthesis" (conditional BN fed by a shared condition, residual up-blocks); Miyato et al. 2018,
"Spectral Normalization for Generative Adversarial Networks" (the discriminator's blocks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["ConditionalBatchNorm", "DownBlock", "UpBlock", "sn"]


def sn(module: nn.Module) -> nn.Module:
    """Spectral normalisation (one power iteration per step)."""
    return spectral_norm(module)


class ConditionalBatchNorm(nn.Module):
    """BatchNorm whose scale and shift come from the condition: (B, C, H, W), (B, cond) -> same."""

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(cond_dim, channels)
        self.bias = nn.Linear(cond_dim, channels)
        nn.init.zeros_(self.gain.weight)  # starts as plain BN: gain 1, bias 0
        nn.init.ones_(self.gain.bias)
        nn.init.zeros_(self.bias.weight)
        nn.init.zeros_(self.bias.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gain = self.gain(cond)[:, :, None, None]
        bias = self.bias(cond)[:, :, None, None]
        return self.bn(x) * gain + bias


class UpBlock(nn.Module):
    """Generator block: CBN-ReLU-up-conv-CBN-ReLU-conv + up-conv1x1 skip; doubles H and W."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, *, noise: bool = False) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm(c_in, cond_dim)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn2 = ConditionalBatchNorm(c_out, cond_dim)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1)
        # StyleGAN's noise inputs (Karras et al. 2019): after each convolution a per-pixel noise
        # map, scaled per channel by a strength that starts at zero
        self.noise_strength = nn.Parameter(torch.zeros(2, c_out, 1, 1)) if noise else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """With noise inputs, `noise` (B, 2 * 2H * 2W) holds the two convolutions' maps, flat;
        None: no noise."""
        h = F.relu(self.bn1(x, cond))
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        if noise is not None:
            noise = noise.view(len(h), 2, *h.shape[-2:])
        h = self._noisy(self.conv1(h), noise, 0)
        h = self._noisy(self.conv2(F.relu(self.bn2(h, cond))), noise, 1)
        return h + self.skip(F.interpolate(x, scale_factor=2, mode="nearest"))

    def _noisy(self, h: torch.Tensor, noise: torch.Tensor | None, i: int) -> torch.Tensor:
        if self.noise_strength is None or noise is None:
            return h
        return h + self.noise_strength[i] * noise[:, i : i + 1].to(h.dtype)


class DownBlock(nn.Module):
    """Discriminator block with spectral norm: (ReLU)-conv-ReLU-conv-avgpool + conv1x1-avgpool skip."""

    def __init__(self, c_in: int, c_out: int, *, first: bool = False, down: bool = True) -> None:
        super().__init__()
        self.first, self.down = first, down
        self.conv1 = sn(nn.Conv2d(c_in, c_out, 3, padding=1))
        self.conv2 = sn(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = sn(nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)  # no ReLU on the raw image
        h = self.conv2(F.relu(self.conv1(h)))
        skip = self.skip(x)
        if self.down:
            h, skip = F.avg_pool2d(h, 2), F.avg_pool2d(skip, 2)
        return h + skip
