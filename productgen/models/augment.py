"""Differentiable augmentation for the discriminator that never touches colour.

Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training": the same random
translation and cutout are applied to real and generated images before the discriminator. Their
colour transform is left out on purpose: colour is an attribute the user controls.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["diff_augment"]


def diff_augment(x: torch.Tensor, translation: float = 0.125, cutout: float = 0.5) -> torch.Tensor:
    """(B, C, H, W) -> same shape: random shift by up to `translation` of the size, one cut-out square."""
    b, _, h, w = x.shape
    if translation > 0:
        sx, sy = int(h * translation + 0.5), int(w * translation + 0.5)
        dx = torch.randint(-sx, sx + 1, (b, 1, 1), device=x.device)
        dy = torch.randint(-sy, sy + 1, (b, 1, 1), device=x.device)
        gx, gy = torch.meshgrid(
            torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij"
        )
        gx = (gx[None] + dx).clamp(-1, h)  # out of range -> padding row/col (value 1.0 = white)
        gy = (gy[None] + dy).clamp(-1, w)
        padded = F.pad(x, (1, 1, 1, 1), value=1.0)  # images in [-1, 1]: the background is white
        idx = torch.arange(b, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[idx, gx + 1, gy + 1].permute(0, 3, 1, 2)
    if cutout > 0:
        ch, cw = int(h * cutout + 0.5), int(w * cutout + 0.5)
        ox = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
        oy = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
        gx, gy = torch.meshgrid(
            torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij"
        )
        inside = ((gx[None] - ox + ch // 2).abs() < ch / 2) & ((gy[None] - oy + cw // 2).abs() < cw / 2)
        x = x * (~inside)[:, None].to(x.dtype)
    return x.contiguous()
