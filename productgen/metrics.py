"""Distribution metrics between two sets of feature vectors (the judge's penultimate layer).

    frechet_distance   FID's formula (Heusel et al. 2017) in the judge's feature space
    precision_recall   improved precision and recall (Kynkaanniemi et al. 2019, k-NN manifolds)

and, between an image and an edit of it (a colour variant), whether the item kept its form:

    silhouette         the item's pixels: those that differ from the photo's border colour
    silhouette_iou     intersection over union of two images' silhouettes
    holes              per image, background-coloured pixels closed in by the item (white
                       specks in a render; stripes, prints, gaps between straps in a photo)
    shading_ssim       SSIM (Wang et al. 2004) of the items' shading: grey levels over the item's
                       median grey, so a navy and a yellow jacket with the same folds match

The judge is trained on this catalog's photos, so its space knows what tells these products
apart; Inception features (what FID usually uses) are neither available offline nor suited to
32-pixel product shots. Numbers are comparable between runs on the same judge only.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "background_distance", "frechet_distance", "holes", "precision_recall", "shading_ssim",
    "silhouette", "silhouette_iou",
]  # fmt: skip


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2) for (N, D) and (M, D) features."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrt_psd(s_a)
    # tr((S_a S_b)^1/2) = tr((S_a^1/2 S_b S_a^1/2)^1/2); the inner matrix is symmetric PSD
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ s_b @ root_a), 0, None)).sum()
    distance = ((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * cross
    return max(float(distance), 0.0)  # rounding can take a zero distance just below 0


def _kth_radius(x: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest other row: (N,)."""
    radii = []
    for i in range(0, len(x), chunk):
        d = torch.cdist(x[i : i + chunk], x)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # +1: the row itself at distance 0
    return torch.cat(radii)


def _inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 2048) -> float:
    """Fraction of points inside at least one ball (centre, radius)."""
    hits = 0
    for i in range(0, len(points), chunk):
        d = torch.cdist(points[i : i + chunk], centres)
        hits += int((d <= radii[None, :]).any(1).sum())
    return hits / len(points)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> dict[str, float]:
    """Precision: share of fakes on the real manifold. Recall: share of reals on the fake manifold."""
    r, f = torch.from_numpy(real).float(), torch.from_numpy(fake).float()
    return {
        "precision": _inside(f, r, _kth_radius(r, k)),
        "recall": _inside(r, f, _kth_radius(f, k)),
    }


_BACKGROUND_DISTANCE = 24  # 0-255 levels a pixel's channels must differ from the border's to be item


def background_distance(images: torch.Tensor) -> torch.Tensor:
    """(N, C, S, S) -> (N, 1, S, S): each pixel's largest channel difference from the background,
    the median colour of the image's border (in the images' own units and dtype)."""
    border = torch.cat([images[:, :, 0], images[:, :, -1], images[:, :, :, 0], images[:, :, :, -1]], dim=2)
    background = border.median(dim=2).values[:, :, None, None]  # (N, C, 1, 1)
    return (images - background).abs().amax(dim=1, keepdim=True)


def silhouette(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, S, S) -> bool (N, S, S): pixels unlike the background (the border's median colour)."""
    return background_distance(images.to(torch.int16))[:, 0] > _BACKGROUND_DISTANCE


def silhouette_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) IoU of the silhouettes of image pairs (1 where both are empty)."""
    sa, sb = silhouette(a), silhouette(b)
    union = (sa | sb).sum((1, 2))
    inter = (sa & sb).sum((1, 2))
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union, dtype=torch.float32))


def holes(images: torch.Tensor, window: int = 5, enclosed: int = 20) -> torch.Tensor:
    """uint8 (N, 3, S, S) -> (N,): how many pixels of each image are background-coloured (off its
    silhouette) while at least `enclosed` of the others in the window around them are item."""
    item = silhouette(images)[:, None].float()  # (N, 1, S, S); off the image counts as background
    around = torch.nn.functional.avg_pool2d(item, window, stride=1, padding=window // 2) * window**2
    return ((item == 0) & (around >= enclosed)).sum((1, 2, 3))


def _shading(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, S, S) in [0, 1]: grey level over the item's median grey (halved), 0 off the item."""
    grey = (images.float() * torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(1)  # (N, S, S)
    mask = silhouette(images)
    medians = torch.stack(
        [g[m].median() if m.any() else g.new_tensor(1.0) for g, m in zip(grey, mask, strict=True)]
    ).clamp(min=1.0)
    return (grey / medians[:, None, None] / 2).clamp(0, 1).mul(mask)[:, None]


def shading_ssim(a: torch.Tensor, b: torch.Tensor, window: int = 7) -> torch.Tensor:
    """(N,) mean SSIM of the shading maps of image pairs, uint8 (N, 3, S, S) each."""
    x, y = _shading(a), _shading(b)
    pool = torch.nn.AvgPool2d(window, stride=1)
    mx, my = pool(x), pool(y)
    vx, vy, cov = pool(x * x) - mx**2, pool(y * y) - my**2, pool(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return ssim.mean((1, 2, 3))
