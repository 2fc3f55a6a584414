"""Benchmark: how far a cVAE's / VAE-GAN's renders are from what its decoder can do at all.

Four image sets, each scored against the same stratified holdout photos in the quick evaluation's
judge space (`productgen.evaluate.score_renders`; FID, precision / recall, category read):

    paired      the encoder's codes of the holdout photos themselves, decoded with their rows
                (and, with a detail code, the photos' own detail):
                each real photo has its own near-twin among them (a pairing renders never have)
    ceiling     the encoder's codes of as many *train* photos, decoded with their own rows: the
                decoder from real photos' codes, the best a prior over codes can give
    ceiling, drawn detail   (a model with a detail code) the same codes, their detail drawn from
                the detail prior, as renders draw it: what the detail prior alone gives up
    renders     the generator on render noise, given the holdout rows (as renders are made)
    real        the train photos themselves (the floor)

Each set also counts its holes (`productgen.metrics.holes`: background-coloured pixels closed in
by the item, per image): the white specks of a render, the stripes, prints and gaps between
straps of a photo.

And the prior's fit to the encoder's codes, on train rows and on holdout rows: its negative
log-likelihood per code (a prior over-fitted to train rows scores worse on holdout rows) and, per
category, the spread of its draws over the spread of the encoder's codes (1.0: as wide as the codes).

    .venv/bin/python benchmarks/decoder_ceiling.py SNAPSHOT RUN [--rows 2000] [--judge-epochs 3]
        [--judge-width 16]    (12 and 32: benchmarks/quality.py's judge)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from productgen.dataset import TrainingSet, load_training_set
from productgen.evaluate import EVALUATIONS, _channels_first, _subset, score_renders, stratified
from productgen.judge import load_or_train_judge, relabel
from productgen.metrics import holes
from productgen.runs import TrainedGenerator, load_generator
from productgen.sheets import to_uint8


@torch.no_grad()
def _codes(model: TrainedGenerator, data: TrainingSet, batch: int = 1000):
    """Codes the encoder gives these photos (one posterior draw each), as training sees them, and
    its features of them at 8 x 8 when the model has a detail code (else None)."""
    codes, photos, detail = [], [], model.generator.config.detail_ch > 0
    for i in range(0, len(data), batch):
        images = data.images[i : i + batch].float() / 127.5 - 1
        mu, logvar, *photo = model.encoder(images, data.conditions[i : i + batch], detail=detail)
        codes.append(mu + torch.randn_like(mu) * (0.5 * logvar).exp())
        photos += photo
    return torch.cat(codes), torch.cat(photos) if photos else None


@torch.no_grad()
def _decode(model: TrainedGenerator, conditions: torch.Tensor, codes=None, photos=None, noise=None):
    """uint8 (N, 3, S, S) images, as the judge reads renders: the decoder on codes (with the
    photos' detail, the posterior's mean, or detail drawn for the noise's detail values), or the
    generator on render noise. Noise inputs read the noise's maps, or fresh ones."""
    G, parts = model.generator, []
    if codes is not None and noise is None:
        noise = torch.randn(len(conditions), G.config.noise_dim)
    for i in range(0, len(conditions), 1000):
        at, cond = slice(i, i + 1000), conditions[i : i + 1000]
        if codes is None:
            parts.append(G(noise[at], cond))
        else:
            photo = photos[at] if photos is not None else None
            parts.append(G.decode(codes[at], cond, noise[at, G.config.z_dim :], photo=photo))
    return _channels_first(to_uint8(torch.cat(parts)))


@torch.no_grad()
def prior_fit(model: TrainedGenerator, data: TrainingSet) -> dict[str, float]:
    """The render prior's likelihood of the encoder's codes and its spread per category vs theirs."""
    G, codes = model.generator, _codes(model, data)[0]
    drawn = G.codes(torch.randn_like(codes), data.conditions)
    category = data.labels["category"]
    spread = [
        (drawn[category == k].std(0) / codes[category == k].std(0)).mean().item()
        for k in category.unique()
        if (category == k).sum() > 1
    ]
    nll = G.prior.nll(codes, data.conditions).item() if G.prior is not None else float("nan")
    return {
        "nll": nll,
        "spread": sum(spread) / len(spread),
        "spread_min": min(spread),
        "spread_max": max(spread),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("snapshot", type=Path)
    parser.add_argument("run", type=Path)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--judge-epochs", type=int, default=3, help="the judge's epochs (3: `make demo`'s)")
    parser.add_argument(
        "--judge-width",
        type=int,
        default=EVALUATIONS["quick"].judge_width,
        help="the judge's first stage's channels (16: `make demo`'s)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_generator(args.run)
    if model.encoder is None:
        raise SystemExit(
            f"{args.run}: its model has no encoder (a cVAE's or VAE-GAN's has); nothing to measure"
        )
    judge = load_or_train_judge(
        args.snapshot, model.generator.config.image_size, epochs=args.judge_epochs, width=args.judge_width
    )
    size = model.generator.config.image_size
    train = load_training_set(args.snapshot, size, model.conditioning, exclude_split="holdout")
    holdout = load_training_set(args.snapshot, size, model.conditioning, exclude_split="train")
    holdout = _subset(holdout, torch.from_numpy(stratified(holdout.rows, args.rows)))
    others = _subset(train, torch.from_numpy(stratified(train.rows, args.rows, seed=1)))
    reference = train.images[
        torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: args.rows]
    ]
    noise = torch.randn(len(holdout), model.generator.config.noise_dim)
    codes, photos = _codes(model, others)
    sets = {
        "paired": (_decode(model, holdout.conditions, *_codes(model, holdout)), holdout),
        "ceiling": (_decode(model, others.conditions, codes, photos), others),
    }
    if photos is not None:  # the same codes, their detail drawn as renders draw it
        drawn = _decode(model, others.conditions, codes, noise=torch.randn(len(others), noise.shape[1]))
        sets["ceiling, drawn detail"] = (drawn, others)
    sets["renders"] = (_decode(model, holdout.conditions, noise=noise), holdout)
    sets["real"] = (others.images, others)
    print(f"| {args.run.name} | category | FID (floor) | precision / recall | holes / image (share, any) |")
    print("|---|---|---|---|---|")
    for name, (images, rows) in sets.items():
        s = score_renders(
            judge, images, relabel(rows, judge.classes), holdout.images, reference, rows=args.rows
        )
        count = holes(images).float()
        print(
            f"| {name} | {s['accuracy']['category']:.1%} | {s['fid']:.2f} ({s['fid_floor']:.2f}) "
            f"| {s['precision']:.2f} / {s['recall']:.2f} "
            f"| {count.mean():.2f} ({(count > 0).float().mean():.0%}) |",
            flush=True,
        )
    sample = torch.randperm(len(train), generator=torch.Generator().manual_seed(2))[: 5 * args.rows]
    for split, data in (("train", _subset(train, sample)), ("holdout", holdout)):
        fit = prior_fit(model, data)
        print(
            f"prior on {split} rows: {fit['nll']:.2f} nats per code; per category, draws' spread"
            f" / codes' spread {fit['spread']:.3f} ({fit['spread_min']:.3f}-{fit['spread_max']:.3f})"
        )


if __name__ == "__main__":
    main()
