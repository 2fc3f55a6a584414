"""Benchmark: does the attribute reader name the category and colour of text it was not built on?

Part 1 (the reader alone, no model): for each half of the word lists (productgen.paraphrase:
"dev" words were looked at while building the reader, "heldout" words never were), two kinds of
row: title-only prompts ("A cagoule that is cherry") and merchant rows (colour "Oxblood",
category "Men > Apparel > Dusters", a title naming neither). Each reader step is added in turn,
so the table shows what each one buys.

Part 2 (with --run and --snapshot): render control. The same (category, colour) pairs as catalog
rows three ways: the demo's own fields (baseline), merchant fields, title only. Each is ingested,
encoded and rendered by the run's model; the snapshot's judge reads the renders. Ratio = the
judge's accuracy on these rows / on the same pairs written in the demo's own fields.

    .venv/bin/python benchmarks/reader.py [--run RUN --snapshot DEMO_SNAPSHOT] [--per-pair 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from productgen.attributes import AttributeReader
from productgen.catalog.ingest import ingest
from productgen.catalog.schema import PALETTE
from productgen.colors import nearest_name
from productgen.paraphrase import HALVES, merchant_rows, paraphrase_set
from productgen.text import EncodeConfig, TextEncoder, encode_snapshot


def _palette(code: str | None) -> str | None:
    """The palette colour a read colour looks nearest (how the judge's colour classes are named)."""
    return (
        nearest_name((int(code[1:3], 16), int(code[3:5], 16), int(code[5:7], 16)), PALETTE) if code else None
    )


def _sets(half: str, per_pair: int) -> dict[str, pd.DataFrame]:
    prompts = paraphrase_set(per_pair, seed=1, half=half)
    merchant = merchant_rows(per_pair, seed=1, half=half)
    return {
        "title only": pd.DataFrame(
            {"title": [p.text for p in prompts], "color": [p.color for p in prompts],
             "category": [p.category for p in prompts]}
        ),
        "merchant fields": pd.DataFrame(
            {"title": [m.title for m in merchant], "color_field": [m.color_field for m in merchant],
             "category_field": [m.category_field for m in merchant], "color": [m.color for m in merchant],
             "category": [m.category for m in merchant]}
        ),
    }  # fmt: skip


def reader_table(encoder: TextEncoder, per_pair: int) -> None:
    steps = {
        "lists (nouns, 31,881 colour names)": AttributeReader(wordnet=False),
        "+ WordNet": AttributeReader(),
        "+ nearest (text model) = the reader": AttributeReader(encoder=encoder),
    }
    print(f"{'reader':<38} {'half':<8} {'rows':<16} {'n':>5} {'category':>9} {'colour':>7}")
    for half in HALVES:
        for kind, rows in _sets(half, per_pair).items():
            fields = {"colors": rows.get("color_field"), "categories": rows.get("category_field")}
            for name, reader in steps.items():
                reads = reader.read(
                    rows["title"].tolist(), **{k: v for k, v in fields.items() if v is not None}
                )
                category = float((reads["category"].to_numpy() == rows["category"].to_numpy()).mean())
                colour = float(
                    (reads["color_hex"].map(_palette).to_numpy() == rows["color"].to_numpy()).mean()
                )
                print(f"{name:<38} {half:<8} {kind:<16} {len(rows):>5} {category:>9.3f} {colour:>7.3f}")


def render_control(run: Path, snapshot: Path, encoder: TextEncoder, per_pair: int) -> None:
    from productgen.judge import load_or_train_judge, predict
    from productgen.render import RenderPipeline

    pipeline = RenderPipeline.from_run(run, encoder=encoder)
    judge = load_or_train_judge(snapshot, pipeline.image_size)
    print(f"\njudge on real holdout photos: {judge.real_accuracy}")
    print(
        f"{'half':<8} {'rows':<16} {'n':>5} {'category':>9} {'colour':>7} {'cat ratio':>9} {'col ratio':>9}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-reader-") as tmp_name:
        tmp = Path(tmp_name)
        for half in HALVES:
            base = None
            sets = _sets(half, per_pair)
            catalogs = {
                "demo fields": sets["merchant fields"][["title", "color", "category"]],
                "merchant fields": sets["merchant fields"][["title", "color_field", "category_field"]].rename(
                    columns={"color_field": "color", "category_field": "category"}
                ),
                "title only": sets["title only"][["title"]],
            }
            truth = {"demo fields": sets["merchant fields"], "merchant fields": sets["merchant fields"],
                     "title only": sets["title only"]}  # fmt: skip
            for kind, catalog in catalogs.items():
                folder = tmp / f"{half}-{kind.replace(' ', '-')}"
                folder.mkdir()
                catalog = catalog.assign(sku=[f"R-{i:05d}" for i in range(len(catalog))])
                catalog.to_csv(folder / "catalog.csv", index=False)
                ingest(folder / "catalog.csv", folder / "snap")
                encode_snapshot(folder / "snap", tmp / "cache", EncodeConfig(), encoder=encoder)
                conditions, rows = pipeline.snapshot_conditions(folder / "snap")
                renders = pipeline(conditions=conditions, seeds=pipeline.seeds(rows["sku"].tolist())).images
                predicted = predict(judge.net, torch.from_numpy(renders).permute(0, 3, 1, 2).contiguous())
                accuracy = {
                    attribute: float(np.mean(
                        np.array(judge.classes[attribute])[predicted[attribute].numpy()]
                        == truth[kind][attribute].to_numpy()
                    ))
                    for attribute in ("category", "color")
                }  # fmt: skip
                base = base or accuracy
                ratio = {a: accuracy[a] / base[a] for a in accuracy}
                print(
                    f"{half:<8} {kind:<16} {len(rows):>5} {accuracy['category']:>9.3f} "
                    f"{accuracy['color']:>7.3f} {ratio['category']:>9.3f} {ratio['color']:>9.3f}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-pair", type=int, default=2, help="rows per (category, colour) pair")
    parser.add_argument("--run", type=Path, help="a trained run folder, for render control")
    parser.add_argument("--snapshot", type=Path, help="the demo snapshot (its judge and photos)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    encoder = TextEncoder(EncodeConfig())
    reader_table(encoder, args.per_pair)
    if args.run and args.snapshot:
        render_control(args.run, args.snapshot, encoder, args.per_pair)


if __name__ == "__main__":
    main()
