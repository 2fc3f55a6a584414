"""The judge and the quality metrics: they pass on real photos and fail on noise; the report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from productgen.catalog.schema import CATEGORIES, PALETTE
from productgen.colors import find_colour, nearest_name
from productgen.dataset import load_training_set
from productgen.evaluate import (
    cas_reference,
    classification_accuracy_score,
    score_renders,
    stratified,
    wilson,
)
from productgen.judge import judge_accuracy, relabel, train_judge
from productgen.metrics import frechet_distance, holes
from productgen.paraphrase import paraphrase_set


@pytest.fixture(scope="module")
def judged(tiny_snapshot: Path):
    train = load_training_set(tiny_snapshot, 32, None, exclude_split="holdout")
    holdout = load_training_set(tiny_snapshot, 32, None, exclude_split="train")
    return train_judge(train, holdout, epochs=15, batch_size=16), holdout


def test_judge_reads_colour_from_real_photos(judged) -> None:
    """Even from 240 photos the judge names the colour of unseen real photos."""
    judge, _ = judged
    assert set(judge.classes) == {"category", "color"}
    assert judge.real_accuracy["color"] >= 0.8


def test_accuracy_falls_to_chance_with_shuffled_descriptions(judged) -> None:
    """Photos judged against other rows' attributes score near chance: the metric can fail."""
    judge, holdout = judged
    labels = relabel(holdout, judge.classes)
    honest = judge_accuracy(judge.net, holdout.images, labels)
    shuffled = {k: v[torch.roll(torch.arange(len(v)), 7)] for k, v in labels.items()}
    lying = judge_accuracy(judge.net, holdout.images, shuffled)
    assert honest["color"] >= 0.8 and lying["color"] <= 0.35


def test_real_photos_as_renders_score_like_real_and_noise_scores_like_noise(
    judged, tiny_snapshot: Path
) -> None:
    """Metrics can pass and fail: real photos match their own statistics; noise matches nothing."""
    judge, holdout = judged
    labels = relabel(holdout, judge.classes)
    train = load_training_set(tiny_snapshot, 32, None, exclude_split="holdout")
    perfect = score_renders(judge, holdout.images, labels, holdout.images, train.images)
    assert perfect["ratio"]["color"] == pytest.approx(1.0)
    assert perfect["fid"] == pytest.approx(0.0, abs=1e-3) and perfect["precision"] == perfect["recall"] == 1.0
    assert perfect["fid_floor"] > 0

    noise = torch.randint(
        0, 256, holdout.images.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    bad = score_renders(judge, noise, labels, holdout.images, train.images)
    assert bad["fid"] > 5 * bad["fid_floor"]
    assert bad["recall"] <= 0.1  # noise covers none of the real photos' manifold
    assert bad["ratio"]["color"] <= 0.4


def test_frechet_distance_of_known_gaussians() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 4))
    assert frechet_distance(a, rng.normal(size=(20000, 4))) == pytest.approx(0.0, abs=0.02)
    # shifting every coordinate by 1 adds |mu|^2 = 4; doubling the scale adds 4 * (1 - 2)^2 = 4 more
    assert frechet_distance(a, rng.normal(1.0, 2.0, size=(20000, 4))) == pytest.approx(8.0, rel=0.05)


def test_holes_are_background_pixels_closed_in_by_the_item() -> None:
    """A speck inside a jacket counts, a notch at its edge and the background around it do not,
    whatever the background's colour."""
    image = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
    image[:, :, 8:24, 8:24] = torch.tensor([20, 30, 90], dtype=torch.uint8)[:, None, None]
    assert holes(image).tolist() == [0]
    image[:, :, 12, 12] = 255  # one speck
    image[:, :, 18:20, 18:20] = 250  # a 2 x 2 patch of near-background
    image[:, :, 8, 15] = 255  # a notch in the edge: most of its window is background
    assert holes(image).tolist() == [5]
    grey = torch.where(image == 255, torch.tensor(128, dtype=torch.uint8), image)  # another backdrop
    # on a grey backdrop the near-white patch is item, and the speck (grey now) is still a hole
    assert holes(torch.cat([grey, image])).tolist() == [1, 5]


def test_heldout_words_are_in_none_of_the_readers_lists() -> None:
    """The held-out half measures the reader on words it was not built with."""
    from productgen.attributes import CATEGORY_NOUNS, GROUP_NOUNS
    from productgen.paraphrase import HELDOUT_CATEGORY_WORDS, MERCHANT_LEAVES

    listed = {n.casefold() for nouns in (*CATEGORY_NOUNS.values(), *GROUP_NOUNS.values()) for n in nouns}
    listed |= set(CATEGORY_NOUNS)
    heldout = {w for words in HELDOUT_CATEGORY_WORDS.values() for w in words}
    heldout |= {leaf.casefold() for leaves in MERCHANT_LEAVES.values() for leaf in leaves[2:]}
    assert not heldout & listed
    assert {p.text for p in paraphrase_set(half="dev")}.isdisjoint({p.text for p in paraphrase_set()})


def test_paraphrases_use_words_the_templates_never_use() -> None:
    prompts = paraphrase_set()
    template_nouns = {n.lower() for _, _, nouns in CATEGORIES for n in nouns}
    assert len(prompts) == 2 * 10 * 14 and {p.kind for p in prompts} == {"hex", "synonym"}
    for p in prompts:
        lowered = p.text.lower()
        assert not any(f" {n} " in f" {lowered} " for n in template_nouns), p.text
        _, rgb = find_colour(p.text)
        assert nearest_name(rgb, PALETTE) == p.color, p.text
        if p.kind == "synonym":
            assert p.color not in lowered.split(), p.text


def test_a_stratified_sample_keeps_the_mix_of_categories_and_colours() -> None:
    rng = np.random.default_rng(1)
    rows = pd.DataFrame({
        "category": rng.choice(["boot", "dress", "shirt"], p=[0.6, 0.3, 0.1], size=10_000),
        "color": rng.choice(["red", "navy"], size=10_000),
    })  # fmt: skip
    picked = stratified(rows, 2000)
    assert len(picked) == 2000 and len(set(picked)) == 2000 and (np.diff(picked) > 0).all()
    whole = rows.value_counts(normalize=True)
    sample = rows.iloc[picked].value_counts()
    assert ((sample - whole * 2000).abs() <= 1).all()  # each stratum within one row of its share
    assert np.array_equal(picked, stratified(rows, 2000))  # the same sample every time
    assert len(stratified(rows, 20_000)) == 10_000


def test_cas_reference_is_the_classifier_on_real_photos_cached_per_snapshot(
    tiny_snapshot: Path, tmp_path: Path, judged
) -> None:
    """CAS's ceiling: the CAS classifier trained on the real photos reads colour where one trained
    on noise does not; it is cached in the snapshot, and a damaged cache file is computed again."""
    snapshot = tmp_path / "snapshot"
    shutil.copytree(tiny_snapshot, snapshot)
    train = load_training_set(snapshot, 32, None, exclude_split="holdout")
    holdout = load_training_set(snapshot, 32, None, exclude_split="train")
    classes = judged[0].classes

    def reference() -> dict[str, float]:
        return cas_reference(snapshot, train, holdout, classes, epochs=40, width=16)

    real = reference()
    generator = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, train.images.shape, dtype=torch.uint8, generator=generator)
    fake = classification_accuracy_score(noise, train, holdout, classes, epochs=40, width=16)
    assert real["color"] >= 0.8 and fake["color"] < 0.4
    (cached,) = (snapshot / ".cache").glob("cas-reference-*.json")
    cached.write_text(json.dumps({"accuracy": {"color": 0.5, "category": 0.25}}))
    assert reference() == {"color": 0.5, "category": 0.25}  # read, not trained again
    damaged = [
        "{", "null", json.dumps({"accuracy": {"color": 7.0}}), json.dumps({"accuracy": {"shape": 0.5}}),
        json.dumps({"accuracy": {"color": 0.5}, "pad": "x" * 70_000}),  # larger than a reference is
    ]  # fmt: skip
    for text in damaged:
        cached.write_text(text)
        assert reference() == real


def test_wilson_intervals() -> None:
    low, high = wilson(0.5, 100)
    assert abs(low - 0.4038) < 1e-3 and abs(high - 0.5962) < 1e-3
    assert wilson(1.0, 2000)[1] == 1.0 and 0.99 < wilson(1.0, 2000)[0] < 1.0
    assert wilson(0.9, 0) == [0.0, 1.0]
    assert np.diff(wilson(0.9, 2000)) < np.diff(wilson(0.9, 200))  # more rows, a tighter interval


@pytest.mark.slow
def test_evaluate_writes_report_and_contact_sheet(
    tiny_snapshot: Path, tiny_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    done = subprocess.run(
        [sys.executable, "-m", "productgen", "evaluate", str(run), str(tiny_snapshot), "--judge-epochs", "3",
         "--json"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "rendered and judged 40 holdout descriptions" in done.stderr  # progress, step by step
    gate = json.loads(done.stdout.splitlines()[-1])
    assert {"category_ratio", "color_accuracy", "paraphrase_color_accuracy", "fid"} <= set(gate)
    metrics = json.loads((run / "eval.json").read_text())
    assert metrics["holdout"]["rows"] == 40 and metrics["paraphrase"]["prompts"] == 280
    assert metrics["paraphrase"]["dev"]["prompts"] == 280
    assert 0 <= metrics["cas"]["accuracy"]["color"] <= 1 and metrics["holdout"]["fid"] > 0
    cas = metrics["cas"]
    assert cas["ratio"]["color"] == pytest.approx(cas["accuracy"]["color"] / cas["reference"]["color"])
    assert f"{100 * cas['reference']['color']:.1f}% real" in (run / "eval.md").read_text()
    assert "| color |" in (run / "eval.md").read_text()
    low, high = metrics["holdout"]["ci95"]["category"]
    assert low <= metrics["holdout"]["accuracy"]["category"] <= high

    # the quick evaluation: a stratified sample of the holdout rows, a narrower judge
    quick = subprocess.run(
        [sys.executable, "-m", "productgen", "evaluate", str(run), str(tiny_snapshot), "--judge-epochs", "3",
         "--quick", "--holdout-rows", "20", "--json"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert quick.returncode == 0, quick.stderr
    metrics = json.loads((run / "eval.json").read_text())
    assert metrics["holdout"]["rows"] == 20 and metrics["holdout_population"] == 40
    assert metrics["judge"]["width"] == 16
    assert (
        "20 holdout descriptions rendered (a sample stratified by category and colour, of 40)"
        in (run / "eval.md").read_text()
    )
    sheet = Image.open(run / "contact-sheet.png")
    assert sheet.width > 8 * 96 and sheet.height > 3 * 96  # 24 pairs, 8 images a row
