"""Colour variants of the photo a merchant already has: the same item, in another colour.

    photo (model size)  -> the model's encoder, with the row's condition      -> latent z
    z + the row's condition, its colour parts set to the requested colour  -> decoder -> base
    z + the row's own condition                                             -> decoder -> recon
    the render prior's typical code for the requested condition             -> decoder -> typical
    base's item colour x per-channel gain -> the typical item's median colour
    variant = base x (photo's grey / recon's grey), at the output size; off the item, the photo

The decoder brings the new colour and the item's form as the model knows it. The latent also
carries some of the photo's own colour (a navy photo's red variant comes out wine), so the base's
colour is moved to that of the model's typical item for the requested condition: measured, the
judge then reads the requested colour 0.995 of the time instead of 0.930. The typical item is
drawn as a render with no spread (psi 0: the mean of the render prior, or of its middle component
given the row); z = 0 stops being typical once the codes leave N(0, I) (a KL weight under 1 with
the conditional prior: the anchor at z = 0 read the asked colour 0.933 of the time). The grey-level ratio
carries the photo's own shading (folds, knit, prints, laces) across at the photo's resolution,
which a 32-pixel decoder alone blurs away. Measured against the decoder alone and the
benchmarks in README ("Colour variants"). Only models with an encoder (cvae, vaegan) make
variants.

Publishing: `{model_version}/{sku}-{colour}.{ext}` through the render's exactly-once manifest
(`publish.publish_plan`), with `variant` -1 and a content hash over the photo's bytes, the
colour, the row's description and the output size: a re-run makes only what changed.
Photos are untrusted, as in training (productgen.dataset): a row whose photo is missing, a link,
too large, or not an image is left out with its reason; the others go on.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from productgen.colors import field_colour, rgb_to_lab
from productgen.dataset import DECODE_ERRORS, brief, check_pixels, decode_photo, photo_path
from productgen.manifest import RUNS
from productgen.metrics import background_distance
from productgen.publish import PublishConfig, PublishProgress, PublishSummary, publish_plan, rendered_from
from productgen.render import GENERATE_ROWS, RenderPipeline, same_kernels
from productgen.runs import TrainedGenerator
from productgen.sheets import labelled_grid, to_uint8
from productgen.snapshot import Snapshot
from productgen.storage import ObjectStore

__all__ = [
    "VARIANT_COLUMN",
    "TargetColour",
    "VariantMaker",
    "parse_colours",
    "publish_variants",
]

VARIANT_COLUMN = "variant_colors"  # a catalog column: "navy;olive;burgundy"
MAX_COLOURS = 32  # per row
METHODS = ("shading", "decoder")  # the decoder's image with the photo's shading, or the decoder's alone
_METHOD_VERSION = 2  # in every content hash with the method: a change of method re-renders
_SEPARATORS = re.compile(r"\s*[;,|]\s*")
_MIN_GREY, _RATIO = 0.04, (0.25, 4.0)  # the shading ratio's floor and range


@dataclass(frozen=True)
class TargetColour:
    """A requested colour: as asked, its key-safe name and its sRGB."""

    asked: str
    slug: str  # in the object key: 'Navy Blue' -> 'navy-blue', '#7B1F3A' -> '7b1f3a'
    rgb: tuple[int, int, int]

    @classmethod
    def parse(cls, name: str) -> TargetColour:
        """A colour name (XKCD, CSS, the community list) or hex code; ValueError naming it if unknown."""
        found = field_colour(name)
        slug = "-".join(re.findall(r"[a-z0-9]+", name.casefold()))
        if not found or not slug or len(slug) > 64:
            raise ValueError(f"{name.strip()[:80]!r} is not a colour name or #hex code productgen knows")
        return cls(name.strip(), slug, found[1])

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.rgb)


def parse_colours(text: str | Sequence[str] | None) -> list[TargetColour]:
    """'navy; olive,burgundy' (or a list of names) -> the colours, first of each name kept."""
    names = _SEPARATORS.split(text) if isinstance(text, str) else list(text or [])
    names = list(dict.fromkeys(n.strip() for n in names if n and n.strip()))
    if len(names) > MAX_COLOURS:  # before any is looked up: a field may hold thousands
        raise ValueError(f"{len(names)} colours asked; at most {MAX_COLOURS} per row")
    unique: dict[str, TargetColour] = {}
    for name in names:
        colour = TargetColour.parse(name)
        unique.setdefault(colour.slug, colour)
    return list(unique.values())


class VariantMaker:
    """A trained model with an encoder, turned into photo -> the same item in other colours."""

    def __init__(self, trained: TrainedGenerator, method: str = "shading") -> None:
        if method not in METHODS:
            raise ValueError(f"variant method must be one of {', '.join(METHODS)}; got {method!r}")
        if trained.encoder is None:
            raise ValueError(
                f"model {trained.version} ({trained.generator.config.family}) has no encoder, so it cannot "
                "read a photo; train a cvae or vaegan model (`productgen train --model vaegan`)"
            )
        self.trained, self.method = trained, method
        self.pipeline = RenderPipeline(trained)
        self.version = trained.version
        self.image_size = trained.generator.config.image_size

    def recoloured(self, conditions: np.ndarray, rgb: Sequence[tuple[int, int, int]]) -> np.ndarray:
        """The rows' conditions with their colour parts saying `rgb` (one colour per row).

        The colour's embedding is that of the model's nearest-looking colour (CIELAB), as for a
        catalog row naming a colour the model never saw; the explicit RGB part is exact.
        """
        config, vocabulary = self.trained.conditioning, self.trained.vocabulary
        out = conditions.astype(np.float32, copy=True)
        asked = np.asarray(rgb, np.float64).reshape(-1, 3)
        if "rgb" in config.parts:
            out[:, config.span("rgb")] = asked / 127.5 - 1.0
        if "color" in config.parts and vocabulary.color_embeddings is not None and len(vocabulary.colors):
            known = rgb_to_lab(vocabulary.color_rgb.astype(np.float64))
            nearest = ((rgb_to_lab(asked)[:, None] - known[None]) ** 2).sum(-1).argmin(1)
            out[:, config.span("color")] = vocabulary.color_embeddings[nearest]
        return out

    @torch.no_grad()
    def __call__(
        self, photos: np.ndarray, conditions: np.ndarray, rgb: Sequence[tuple[int, int, int]]
    ) -> np.ndarray:
        """photos (N, S, S, 3) uint8 at the output size, their rows' conditions (N, C), one target
        colour per photo -> (N, S, S, 3) uint8 variants. Deterministic: the latent is the
        encoder's mean, and every call has the render's fixed shape on one thread."""
        n, size = len(photos), photos.shape[1]
        target = self.recoloured(conditions, rgb)
        out = []
        with same_kernels():
            for start in range(0, n, GENERATE_ROWS):
                batch = slice(start, start + GENERATE_ROWS)
                big = torch.from_numpy(photos[batch]).permute(0, 3, 1, 2).float() / 127.5 - 1  # (B, 3, S, S)
                k = len(big)
                small = big if size == self.image_size else F.interpolate(
                    big, size=self.image_size, mode="area"
                )  # fmt: skip
                source = torch.from_numpy(np.ascontiguousarray(conditions[batch], np.float32))
                wanted = torch.from_numpy(target[batch])
                if k < GENERATE_ROWS:  # pad with copies of the first row (see render.same_kernels)
                    small, source, wanted = (
                        torch.cat([t, t[:1].expand(GENERATE_ROWS - k, *t.shape[1:])])
                        for t in (small, source, wanted)
                    )
                mu, _ = self.trained.encoder(small, source)
                decode = self.trained.generator.decode
                base = decode(mu, wanted)
                # a render of the wanted row with no spread: no photo's colour in it
                typical = decode(self.trained.generator.codes(torch.zeros_like(mu), wanted, psi=0.0), wanted)
                base = _colour_like(base, typical, small)[:k]
                if self.method == "shading":
                    made = _with_shading(big, base, decode(mu, source)[:k])
                elif size == self.image_size:  # the decoder's item alone, on its own background
                    made = base
                else:
                    made = F.interpolate(base, size=size, mode="bilinear")
                out.append(to_uint8(made))
        return np.concatenate(out) if out else np.zeros((0, size, size, 3), np.uint8)


def _grey(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] (B, 3, H, W) -> grey levels in [0, 1] (B, 1, H, W)."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype)[None, :, None, None]
    return ((images + 1) / 2 * weights).sum(1, keepdim=True)


def _item_median(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, 3) median colour over each image's mask (B, 1, H, W) bool; grey 0 where empty."""
    out = []
    for image, m in zip(images, mask, strict=True):
        pixels = image[:, m[0]]
        out.append(pixels.median(dim=1).values if pixels.shape[1] else image.new_zeros(3))
    return torch.stack(out)


def _alpha(photo: torch.Tensor) -> torch.Tensor:
    """How much each pixel is item (B, 1, H, W) in [0, 1]: its distance from the background colour
    (the median of the image's border), from 8 levels (none) to 48 (all)."""
    return ((background_distance(photo) * 127.5 - 8) / 40).clamp(0, 1)


def _colour_like(base: torch.Tensor, typical: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
    """base with its item's median colour moved to the typical render's (per-channel gain)."""
    have = _item_median((base + 1) / 2, _alpha(photo) > 0.5)
    want = _item_median((typical + 1) / 2, _alpha(typical) > 0.5)
    gain = ((want + 0.02) / (have + 0.02)).clamp(0.5, 2.0)[:, :, None, None]
    return (((base + 1) / 2) * gain).clamp(0, 1) * 2 - 1


def _with_shading(photo: torch.Tensor, base: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """The decoder's new-colour item `base`, shaded like the photo, on the photo's background.

    All in [-1, 1]; photo at the output size, base and recon at the model's (upsampled here).
    """
    size = photo.shape[-1]
    if base.shape[-1] != size:
        base, recon = (F.interpolate(t, size=size, mode="bilinear") for t in (base, recon))
    ratio = ((_grey(photo) + _MIN_GREY) / (_grey(recon) + _MIN_GREY)).clamp(*_RATIO)
    shaded = ((base + 1) / 2 * ratio).clamp(0, 1) * 2 - 1
    alpha = _alpha(photo)
    return alpha * shaded + (1 - alpha) * photo


@dataclass
class VariantRejects:
    """Rows (or colours of a row) left out, with why; the rest go on."""

    rows: list[dict[str, str]] = field(default_factory=list)

    def add(self, sku: str, image: object, reason: str) -> None:
        self.rows.append({"sku": sku, "image": str(image or ""), "reason": reason})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["sku", "image", "reason"])


def _photo_bytes(root: Path, relative: str, plain_dirs: set[Path]) -> bytes:
    """A photo file's bytes, after the training checks (inside the folder, no link, bounded)."""
    path, reason = photo_path(root, relative, plain_dirs)
    if path is None:
        raise ValueError(reason)
    with open(path, "rb") as f:
        return f.read()


def _variant_hash(method: str, row_hash: str, photo_sha256: str, colour: TargetColour, size: int) -> str:
    payload = repr((method, _METHOD_VERSION, row_hash, photo_sha256, colour.slug, colour.hex, size))
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def _plan_variants(
    snap: Snapshot, maker: VariantMaker, colours: list[TargetColour], size: int, image_format: str
) -> tuple[pd.DataFrame, VariantRejects]:
    """One row per variant to exist (row, sku, variant -1, key, content_hash, colour, image, photo
    sha256); the rows left out, with reasons. Every photo is read and hashed here."""
    rejects, items, plain_dirs = VariantRejects(), [], set()
    root = snap.image_root()
    skus: set[str] = set()
    for _, rows in snap.stream_reads(["sku"]):
        skus.update(rows["sku"])
    for start, rows in snap.stream_reads(["sku", "content_hash", "image", VARIANT_COLUMN]):
        hashes = rendered_from(rows, 1.0)
        blank = [None] * len(rows)
        own, images = rows.get(VARIANT_COLUMN, blank), rows.get("image", blank)
        for i, (sku, image, asked) in enumerate(zip(rows["sku"], images, own, strict=True)):
            wanted = colours
            if isinstance(asked, str) and asked.strip():
                try:
                    wanted = parse_colours(asked)
                except ValueError as e:
                    rejects.add(sku, image, f"{VARIANT_COLUMN}: {e}")
                    continue
            if not wanted:
                continue
            if not isinstance(image, str) or not image.strip():
                rejects.add(sku, image, "no photo to make variants from (image is empty)")
                continue
            try:
                data = _photo_bytes(root, image, plain_dirs)
            except (ValueError, OSError) as e:
                rejects.add(sku, image, str(e))
                continue
            try:
                with Image.open(io.BytesIO(data)) as im:  # the header only: decoded when made
                    check_pixels(im)
            except DECODE_ERRORS as e:
                rejects.add(sku, image, f"photo is not an image ({brief(e)})")
                continue
            sha = hashlib.sha256(data).hexdigest()
            for colour in wanted:
                key = f"{maker.version}/{sku}-{colour.slug}.{image_format}"
                if f"{sku}-{colour.slug}" in skus:  # that key is the render of another SKU
                    rejects.add(sku, image, f"variant key {key} is also SKU {sku}-{colour.slug}'s image")
                    continue
                items.append({
                    "row": start + i, "sku": sku, "variant": -1, "key": key, "seed": 0,
                    "content_hash": _variant_hash(maker.method, hashes[i], sha, colour, size),
                    "doubtful": False, "colour": colour, "image": image, "photo_sha256": sha,
                })  # fmt: skip
    return pd.DataFrame(items, columns=[*_PLAN_COLUMNS]), rejects


_PLAN_COLUMNS = (
    "row", "sku", "variant", "key", "seed", "content_hash", "doubtful", "colour", "image", "photo_sha256",
)  # fmt: skip


@dataclass
class _Sheet:
    """The first `rows` photos a run made variants of, each with its variants: the run's contact sheet."""

    rows: int = 8
    photos: dict[int, tuple[str, np.ndarray]] = field(default_factory=dict)  # row -> (sku, photo)
    variants: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # row -> colour -> image

    def add(self, item: dict, photo: np.ndarray, variant: np.ndarray) -> None:
        if item["row"] in self.photos or len(self.photos) < self.rows:
            self.photos.setdefault(item["row"], (item["sku"], photo))
            self.variants.setdefault(item["row"], {})[item["colour"].slug] = variant

    def png(self, title: str) -> bytes | None:
        if not self.photos:
            return None
        width = 1 + max(len(v) for v in self.variants.values())
        cells: list[np.ndarray | None] = []
        labels: list[str] = []
        for row, (sku, photo) in self.photos.items():
            made = self.variants[row]
            padding = width - 1 - len(made)
            cells += [photo, *made.values(), *[None] * padding]
            labels += [f"{sku} (photo)", *made, *[""] * padding]
        buffer = io.BytesIO()
        scale = max(1, 96 // len(next(iter(self.photos.values()))[1]))  # cells of about 96 pixels
        labelled_grid(cells, labels, width, scale=scale, title=title).save(buffer, format="PNG")
        return buffer.getvalue()


def _make(
    snapshot: Path, maker: VariantMaker, size: int, rejects: VariantRejects, sheet: _Sheet, batch: int = 256
) -> Callable[[pd.DataFrame], Iterator[tuple[list[dict], np.ndarray]]]:
    """The producer for publish_plan: variants of the todo rows, a batch at a time."""
    root, plain_dirs = Snapshot(snapshot).image_root(), set()

    def produce(todo: pd.DataFrame) -> Iterator[tuple[list[dict], np.ndarray]]:
        todo_rows = todo["row"].to_numpy()
        for positions, conditions in maker.pipeline.stream_conditions(snapshot, np.unique(todo_rows)):
            lo, hi = np.searchsorted(todo_rows, [positions[0], positions[-1] + 1])
            where = np.searchsorted(positions, todo_rows[lo:hi])
            for start in range(lo, hi, batch):
                items = todo.iloc[start : min(start + batch, hi)].to_dict("records")
                photos, keep, decoded = [], [], {}
                for j, item in enumerate(items):
                    if item["image"] not in decoded:
                        decoded[item["image"]] = _decode(root, item, size, plain_dirs)
                    pixels = decoded[item["image"]]
                    if isinstance(pixels, str):
                        rejects.add(item["sku"], item["image"], pixels)
                        continue
                    photos.append(pixels)
                    keep.append(j)
                if not keep:
                    continue
                rows = where[start - lo : start - lo + len(items)][keep]
                kept = [items[j] for j in keep]
                made = maker(np.stack(photos), conditions[rows], [item["colour"].rgb for item in kept])
                for item, photo, variant in zip(kept, photos, made, strict=True):
                    sheet.add(item, photo, variant)
                yield kept, made

    return produce


def _decode(root: Path, item: dict, size: int, plain_dirs: set[Path]) -> np.ndarray | str:
    """The item's photo at `size`, or why not (read again: it must still be the planned bytes)."""
    try:
        data = _photo_bytes(root, item["image"], plain_dirs)
        if hashlib.sha256(data).hexdigest() != item["photo_sha256"]:
            return "the photo changed while variants were made; run again"
        return decode_photo(io.BytesIO(data), size)
    except DECODE_ERRORS as e:
        return f"photo does not decode ({brief(e)})"


@dataclass
class VariantSummary:
    publish: PublishSummary
    rejects: pd.DataFrame  # sku, image, reason
    sheet: str | None = None  # the run's contact sheet in the store (a URL); None when nothing was made
    sheet_png: bytes | None = None

    def to_json(self) -> dict[str, object]:
        return {**self.publish.to_json(), "rejected": len(self.rejects), "sheet": self.sheet}


def publish_variants(
    snapshot: Path,
    maker: VariantMaker,
    store: ObjectStore,
    config: PublishConfig | None = None,
    *,
    colours: Sequence[TargetColour] = (),
    on_progress: Callable[[PublishProgress], None] | None = None,
    sheet_rows: int = 8,
) -> VariantSummary:
    """Make and publish every requested variant not yet published; rows left out come back with why.

    colours: for every row with a photo and no `variant_colors` of its own. The run's contact
    sheet (its first `sheet_rows` photos, each followed by its variants) is stored beside the
    run's manifest: manifests/runs/<run_id>/variants-sheet.png.
    """
    started, config = time.perf_counter(), config or PublishConfig()
    snap = maker.pipeline.check_snapshot(snapshot)
    size = config.render.size or maker.image_size
    plan, rejects = _plan_variants(snap, maker, list(colours), size, config.render.image_format)
    if plan.empty and not len(rejects.rows):
        raise ValueError(
            f"{snapshot}: no variants asked; give colours (--colors navy,olive) or a {VARIANT_COLUMN} column"
        )
    sheet = _Sheet(sheet_rows)
    produce = _make(snapshot, maker, size, rejects, sheet, config.render.batch_size)
    summary = publish_plan(
        plan, produce, store, config, version=maker.version, started=started, on_progress=on_progress
    )
    png = sheet.png(f"colour variants (model {maker.version})")
    url = None
    if png is not None:
        key = f"{RUNS}{summary.run_id}/variants-sheet.png"
        store.put(key, png, content_type="image/png")
        url = store.url(key)
    return VariantSummary(summary, rejects.frame(), url, png)
