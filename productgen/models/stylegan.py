"""A StyleGAN2-style conditional generator: mapping network, modulated convolutions, noise inputs.

Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN" (weight demodulation,
skip-connected RGB outputs) and Karras et al. 2021 (StyleGAN2-ADA's conditioning: the condition
code is concatenated with the normalised noise before the mapping network).

    (z, cond) -> mapping MLP -> w (one per layer; two w's mixed at a random layer in training)
    constant 4x4 -> per level: up, modconv 3x3 + noise, modconv 3x3 + noise -> toRGB, summed up

Rendering must be a function of (z, cond) alone, so in eval mode the per-pixel noise inputs are
fixed buffers (StyleGAN2's "const" noise mode) and truncation pulls w towards the centre of *its
own condition* (the mean w over a fixed bank of noise draws), not the global mean, which would
wash the requested colour and category out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from productgen.models.networks import CondProjection, ModelConfig, channels

__all__ = ["StyleGenerator"]

MAPPING_LAYERS = 4
STYLE_MIXING = 0.5  # share of training batches whose layers take w from two noise draws
TRUNCATION_BANK = 64  # noise draws averaged for a condition's centre


class ModulatedConv(nn.Module):
    """A convolution whose input channels are scaled per sample by a style, then demodulated.

    Computed as scale-input -> shared conv -> scale-output (StyleGAN2's non-fused form), which is
    the same arithmetic as per-sample weights and runs as one ordinary convolution.
    """

    def __init__(self, c_in: int, c_out: int, w_dim: int, kernel: int, *, demodulate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel) / (c_in * kernel * kernel) ** 0.5)
        self.affine = nn.Linear(w_dim, c_in)
        nn.init.ones_(self.affine.bias)  # styles start at 1: the layer starts as a plain conv
        self.demodulate = demodulate
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.affine(w)  # (B, c_in)
        x = F.conv2d(x * style[:, :, None, None], self.weight, padding=self.padding)
        if self.demodulate:  # unit expected output variance per sample and channel
            energy = style.pow(2) @ self.weight.pow(2).sum((2, 3)).t()  # (B, c_out)
            x = x * torch.rsqrt(energy + 1e-8)[:, :, None, None]
        return x


class StyleLayer(nn.Module):
    """modconv -> + scaled per-pixel noise -> + bias -> leaky ReLU, at a fixed resolution."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, resolution: int) -> None:
        super().__init__()
        self.conv = ModulatedConv(c_in, c_out, w_dim, 3)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = self.conv(x, w)
        if self.training:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        else:
            noise = self.noise_const.to(x.dtype)
        return F.leaky_relu(x + noise * self.noise_strength + self.bias[:, None, None], 0.2)


class StyleGenerator(nn.Module):
    """(z (B, z_dim), cond (B, cond_in)) -> image (B, 3, S, S) in [-1, 1]; `psi` < 1 truncates."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        ch = channels(config.g_ch, config.levels)
        w_dim = config.cond_dim
        self.cond = CondProjection(config.cond_in, config.cond_dim, config.cond_augment)
        layers: list[nn.Module] = []
        width = config.z_dim + config.cond_dim
        for _ in range(MAPPING_LAYERS):
            layers += [nn.Linear(width, w_dim), nn.LeakyReLU(0.2)]
            width = w_dim
        self.mapping = nn.Sequential(*layers)
        self.const = nn.Parameter(torch.randn(1, ch[0], 4, 4))
        self.layers = nn.ModuleList([StyleLayer(ch[0], ch[0], w_dim, 4)])
        self.to_rgb = nn.ModuleList([ModulatedConv(ch[0], 3, w_dim, 1, demodulate=False)])
        for i in range(config.levels):
            resolution = 8 * 2**i
            self.layers.append(StyleLayer(ch[i], ch[i + 1], w_dim, resolution))
            self.layers.append(StyleLayer(ch[i + 1], ch[i + 1], w_dim, resolution))
            self.to_rgb.append(ModulatedConv(ch[i + 1], 3, w_dim, 1, demodulate=False))
        self.rgb_bias = nn.Parameter(torch.zeros(3))
        bank = torch.randn(TRUNCATION_BANK, config.z_dim, generator=torch.Generator().manual_seed(0))
        self.register_buffer("truncation_bank", bank)

    @property
    def num_ws(self) -> int:
        return len(self.layers) + 1  # the last toRGB takes its own w

    def _map(self, z: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        z = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)  # onto the sphere, as StyleGAN
        return self.mapping(torch.cat([z, code], dim=1))

    def ws(self, z: torch.Tensor, cond: torch.Tensor, psi: float = 1.0) -> torch.Tensor:
        """Per-layer styles (B, num_ws, w_dim): mixed in training, truncated towards the
        condition's own centre when psi < 1."""
        code = self.cond(cond)
        w = self._map(z, code)
        ws = w[:, None].expand(-1, self.num_ws, -1)
        if self.training and STYLE_MIXING > 0:
            other = self._map(torch.randn_like(z), code)
            cut = torch.randint(1, self.num_ws, (z.shape[0], 1), device=z.device)
            mixed = torch.rand(z.shape[0], 1, device=z.device) < STYLE_MIXING
            later = torch.arange(self.num_ws, device=z.device)[None] >= cut  # (B, num_ws)
            ws = torch.where((later & mixed)[:, :, None], other[:, None], ws)
        if psi != 1.0:
            bank = self.truncation_bank.to(z.dtype)
            n, b = len(bank), z.shape[0]
            centre = self._map(bank.repeat(b, 1), code.repeat_interleave(n, 0)).view(b, n, -1).mean(1)
            ws = centre[:, None] + psi * (ws - centre[:, None])
        return ws

    def forward(self, z: torch.Tensor, cond: torch.Tensor, psi: float = 1.0) -> torch.Tensor:
        ws = self.ws(z, cond, psi)
        x = self.const.expand(z.shape[0], -1, -1, -1)
        x = self.layers[0](x, ws[:, 0])
        rgb = self.to_rgb[0](x, ws[:, 1])
        for level in range(self.config.levels):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = self.layers[1 + 2 * level](x, ws[:, 1 + 2 * level])
            x = self.layers[2 + 2 * level](x, ws[:, 2 + 2 * level])
            rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
            rgb = rgb + self.to_rgb[level + 1](x, ws[:, 3 + 2 * level])
        return torch.tanh(rgb + self.rgb_bias[:, None, None])
