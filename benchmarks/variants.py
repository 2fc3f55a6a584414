"""Benchmark: colour variants of holdout photos, read by the evaluation's judge (issue 15's targets).

For N holdout photos of a demo snapshot and every palette colour other than the photo's own, a
variant is made by each method (productgen.variants.METHODS) and measured:

    colour      the judge reads the requested colour                       (target >= 0.97)
    category    the judge reads the photo's category, over the rate at which it reads it on the
                photo itself                                                (target >= 0.95)
    IoU         silhouette of the variant vs the photo                      (target >= 0.90)
    SSIM        of the shading (grey levels over the item's median grey)   (target >= 0.80)

The judge is trained on the train split's photos only; the variant maker never sees it.
With --cycle-minutes M, an unpaired colour translator (productgen.models.translator) is first
trained CycleGAN-style for M minutes on the train split's photos and measured the same way.

With --restyle "in denim;with a knit texture", how much those words change the decoder's item.

    .venv/bin/python benchmarks/variants.py --snapshot SNAP --run RUN [--photos 2000]
        [--cycle-minutes 10] [--restyle WORDS] [--sheet out.png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from productgen.dataset import load_training_set
from productgen.judge import load_or_train_judge, predict
from productgen.losses import Batch, CycleLoss
from productgen.metrics import shading_ssim, silhouette_iou
from productgen.models import Discriminator, ModelConfig
from productgen.models.translator import ColourTranslator
from productgen.runs import load_generator
from productgen.sheets import labelled_grid, save_png, to_uint8
from productgen.snapshot import Snapshot
from productgen.variants import METHODS, VariantMaker


def train_translator(
    snapshot: Path, size: int, minutes: float, seed: int = 0
) -> tuple[ColourTranslator, int]:
    """A colour translator trained for `minutes` on the train split's photos; (translator, steps)."""
    torch.manual_seed(seed)
    data = load_training_set(snapshot, size, None, exclude_split="holdout")
    labels = data.labels["color"]
    known = labels >= 0
    images, labels = data.images[known], labels[known]
    own = torch.from_numpy(data.vocabulary.color_rgb.astype(np.float32) / 127.5 - 1)[labels]
    translator = ColourTranslator(channels=16, blocks=3)
    config = ModelConfig(family="cgan", image_size=size, cond_in=3, d_ch=16)
    config = ModelConfig(**{**config.to_json(), "aux_classes": {"color": len(data.vocabulary.colors)}})
    discriminator = Discriminator(config)
    opt_g = torch.optim.Adam(translator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    loss = CycleLoss(translator, discriminator, opt_g, opt_d)
    started, step = time.perf_counter(), 0
    while time.perf_counter() - started < minutes * 60:
        index = torch.randint(len(images), (64,))
        x = images[index].float() / 127.5 - 1
        losses = loss.step(Batch(x, own[index], {"color": labels[index]}, step))
        step += 1
        if step % 500 == 0:
            print(f"  translator step {step}: " + " ".join(f"{k} {float(v):.3f}" for k, v in losses.items()))
    return translator.eval(), step


class _Translate:
    """The translator with VariantMaker's call: (photos uint8 (N, S, S, 3), conditions, rgb) -> uint8."""

    def __init__(self, translator: ColourTranslator) -> None:
        self.translator = translator

    @torch.no_grad()
    def __call__(self, photos: np.ndarray, conditions: np.ndarray, rgb: list) -> np.ndarray:
        out = []
        for start in range(0, len(photos), 256):
            x = torch.from_numpy(photos[start : start + 256]).permute(0, 3, 1, 2).float() / 127.5 - 1
            target = torch.tensor(rgb[start : start + 256], dtype=torch.float32) / 127.5 - 1
            out.append(to_uint8(self.translator(x, target)))
        return np.concatenate(out)


def restyle_effect(
    trained, pixels: np.ndarray, rows: pd.DataFrame, conditions: np.ndarray, words: str
) -> None:
    """How much restyling words change the decoder's item, against a change of colour.

    The decoder redraws each photo's latent with its description, then with `words` added to it
    (its colour unchanged); the mean change per pixel (0-255 levels) is set beside the change
    the same decoder makes for red instead of blue. A restyle the model can do changes the item
    about as much as a colour does; one it cannot leaves it as it was.
    """
    from productgen.text import EncodeConfig, TextEncoder, description_text

    encoder = TextEncoder(EncodeConfig(model=trained.text_model))
    maker, span = VariantMaker(trained, "decoder"), trained.conditioning.span("description")
    own = [tuple(int(v) for v in trained.vocabulary.color_rgb[trained.vocabulary.colors.index(c)])
           for c in rows["color"]]  # fmt: skip
    plain_text = [
        description_text(t, None, None, c) for t, c in zip(rows["title"], rows["category"], strict=True)
    ]
    plain = conditions.copy()
    plain[:, span] = encoder.encode(plain_text)
    base = maker(pixels, plain, own).astype(np.float32)
    red, blue = (
        maker(pixels, plain, [rgb] * len(pixels)).astype(np.float32)
        for rgb in ((200, 30, 30), (40, 110, 230))
    )
    print(
        f"restyle on {len(rows):,} photos: red instead of blue changes the decoder's item by "
        f"{np.abs(red - blue).mean():.1f} levels"
    )
    for phrase in (w.strip() for w in words.split(";") if w.strip()):
        styled = conditions.copy()
        texts = [
            description_text(f"{t} {phrase}", None, None, c)
            for t, c in zip(rows["title"], rows["category"], strict=True)
        ]
        styled[:, span] = encoder.encode(texts)
        change = np.abs(maker(pixels, styled, own).astype(np.float32) - base).mean()
        print(f"  + {phrase!r}: {change:.1f} levels")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--judge-epochs", type=int, default=4)
    parser.add_argument("--cycle-minutes", type=float, default=0.0)
    parser.add_argument(
        "--restyle", default="", help="'in denim;with a knit texture': measure restyling words"
    )
    parser.add_argument("--sheet", type=Path, default=None, help="contact sheet of the first method")
    args = parser.parse_args()

    trained = load_generator(args.run)
    size = trained.generator.config.image_size
    judge = load_or_train_judge(args.snapshot, size, epochs=args.judge_epochs)
    holdout = load_training_set(args.snapshot, size, None, exclude_split="train")
    pick = torch.randperm(len(holdout), generator=torch.Generator().manual_seed(0))[: args.photos]
    photos, rows = holdout.images[pick], holdout.rows.iloc[pick.numpy()].reset_index(drop=True)
    conditions, every = trained.conditioner.for_snapshot(Snapshot(args.snapshot))
    conditions = conditions[pd.Index(every["sku"]).get_indexer(rows["sku"])]
    colours, categories = judge.classes["color"], judge.classes["category"]
    palette = dict(zip(trained.vocabulary.colors, map(tuple, trained.vocabulary.color_rgb), strict=True))
    truth = torch.tensor([categories.index(c) for c in rows["category"]])
    on_photo = float((predict(judge.net, photos)["category"] == truth).float().mean())
    pixels = photos.permute(0, 2, 3, 1).numpy()
    print(f"{len(rows):,} holdout photos; the judge reads their category {on_photo:.3f} on the photo itself")
    print("| method | variants | colour | category (ratio) | silhouette IoU | shading SSIM | variants/s |")
    print("|---|---|---|---|---|---|---|")
    if args.restyle:
        restyle_effect(trained, pixels[:500], rows.head(500), conditions[:500], args.restyle)
    makers = {method: VariantMaker(trained, method) for method in METHODS}
    if args.cycle_minutes:
        translator, steps = train_translator(args.snapshot, size, args.cycle_minutes)
        makers[f"cycle ({args.cycle_minutes:g} min, {steps:,} steps)"] = _Translate(translator)
    for method, maker in makers.items():
        right_colour = right_category = total = 0
        ious, ssims, seconds, sheet = [], [], 0.0, {}
        for name in colours:
            other = np.flatnonzero(rows["color"].to_numpy() != name)
            started = time.perf_counter()
            made = maker(pixels[other], conditions[other], [palette[name]] * len(other))
            seconds += time.perf_counter() - started
            made = torch.from_numpy(made).permute(0, 3, 1, 2)
            read = predict(judge.net, made)
            right_colour += int((read["color"] == colours.index(name)).sum())
            right_category += int((read["category"] == truth[other]).sum())
            total += len(other)
            ious.append(silhouette_iou(photos[other], made))
            ssims.append(shading_ssim(photos[other], made))
            sheet[name] = dict(zip(other[:8].tolist(), made[:8], strict=False))
        category = right_category / total
        iou, ssim = float(torch.cat(ious).mean()), float(torch.cat(ssims).mean())
        print(
            f"| {method} | {total:,} | {right_colour / total:.3f} | {category:.3f} "
            f"({category / on_photo:.3f}) | {iou:.3f} | {ssim:.3f} | {total / seconds:,.0f} |"
        )
        if args.sheet and method == METHODS[0]:
            cells, labels = [], []
            for i in range(6):
                cells.append(pixels[i])
                labels.append(f"photo ({rows['color'][i]})")
                for name in colours:
                    image = sheet[name].get(i)
                    cells.append(None if image is None else image.permute(1, 2, 0).numpy())
                    labels.append(name if image is not None else "")
            save_png(labelled_grid(cells, labels, 1 + len(colours), title=f"variants ({method})"), args.sheet)


if __name__ == "__main__":
    main()
