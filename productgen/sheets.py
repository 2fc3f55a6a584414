"""Labelled image sheets: sample sheets during training, contact sheets in reports."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from productgen.atomic import atomic_path

__all__ = ["labelled_grid", "save_png", "to_uint8"]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [-1, 1] -> (N, H, W, 3) uint8."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def labelled_grid(
    images: np.ndarray | Sequence[np.ndarray | None],
    labels: Sequence[str],
    columns: int,
    *,
    scale: int = 3,
    title: str | None = None,
) -> Image.Image:
    """Images (H, W, 3) uint8 in a grid, each captioned underneath; None leaves a cell blank."""
    first = next(im for im in images if im is not None)
    h, w = first.shape[0] * scale, first.shape[1] * scale
    font = ImageFont.load_default(size=11)
    caption_h, pad = 28, 6
    cell_w = max(w, 96)
    rows = (len(images) + columns - 1) // columns
    top = 24 if title else 0
    sheet = Image.new(
        "RGB", (columns * (cell_w + pad) + pad, top + rows * (h + caption_h + pad) + pad), "white"
    )
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 5), title, fill=(0, 0, 0), font=ImageFont.load_default(size=14))
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        x = pad + (i % columns) * (cell_w + pad)
        y = top + pad + (i // columns) * (h + caption_h + pad)
        if image is not None:
            tile = Image.fromarray(image).resize((w, h), Image.Resampling.NEAREST)
            sheet.paste(tile, (x + (cell_w - w) // 2, y))
            draw.rectangle(
                (x + (cell_w - w) // 2 - 1, y - 1, x + (cell_w + w) // 2, y + h), outline=(220, 220, 220)
            )
        for j, line in enumerate(_wrap(label, font, cell_w)[:2]):
            draw.text((x, y + h + 2 + j * 12), line, fill=(40, 40, 40), font=font)
    return sheet


def _wrap(text: str, font: ImageFont.ImageFont, width: int) -> list[str]:
    lines, current = [], ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if font.getlength(trial) <= width or not current:
            current = trial
        else:
            lines.append(current)
            current = word
    return [*lines, current] if current else lines


def save_png(image: Image.Image, path: Path) -> Path:
    """Write a PNG atomically."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
