"""The judge: trained on real photos, it reads colour from them, and its metric can fail."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from productgen.conditioning import ConditionConfig
from productgen.dataset import load_training_set
from productgen.evaluate import _relabel, judge_accuracy, train_judge


@pytest.fixture(scope="module")
def judged(tiny_snapshot: Path):
    train = load_training_set(tiny_snapshot, 32, ConditionConfig(), exclude_split="holdout")
    holdout = load_training_set(tiny_snapshot, 32, ConditionConfig(), exclude_split="train")
    return train_judge(train, holdout, epochs=15, batch_size=16), holdout


def test_judge_reads_colour_from_real_photos(judged) -> None:
    """Even from 240 photos the judge names the colour of unseen real photos."""
    judge, _ = judged
    assert set(judge.classes) == {"category", "color"}
    assert judge.real_accuracy["color"] >= 0.8


def test_accuracy_falls_to_chance_with_shuffled_descriptions(judged) -> None:
    """Photos judged against other rows' attributes score near chance: the metric can fail."""
    judge, holdout = judged
    labels = _relabel(holdout, judge.classes)
    honest = judge_accuracy(judge.net, holdout.images, labels)
    shuffled = {k: v[torch.roll(torch.arange(len(v)), 7)] for k, v in labels.items()}
    lying = judge_accuracy(judge.net, holdout.images, shuffled)
    assert honest["color"] >= 0.8 and lying["color"] <= 0.35
