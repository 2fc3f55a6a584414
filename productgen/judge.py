"""The judge: a small CNN that reads category and colour from a product photo.

It is trained on the real photos of the catalog's train split, one head per controlled attribute,
and measured on the real holdout photos: that accuracy is the ceiling renders are compared
against (productgen.evaluate). Its penultimate layer is the feature space of FID and
precision/recall. It is never a training signal for a generator.

    train photos -> JudgeNet (3 conv stages, a head per attribute) -> cached in the snapshot's
    cache as judge-<S>px-<fingerprint>-e<epochs>.safetensors
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from productgen.checkpoint import load_checkpoint, save_checkpoint
from productgen.dataset import TrainingSet, load_training_set, training_fingerprint
from productgen.snapshot import Snapshot

__all__ = [
    "Judge",
    "JudgeNet",
    "embed",
    "judge_accuracy",
    "load_or_train_judge",
    "predict",
    "relabel",
    "train_judge",
]


class JudgeNet(nn.Module):
    """(B, 3, S, S) in [-1, 1] -> {attribute: logits (B, K)}. Three conv stages, one head each."""

    def __init__(self, classes: dict[str, int], width: int = 32) -> None:
        super().__init__()

        def stage(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2),
            )  # fmt: skip

        self.features = nn.Sequential(stage(3, width), stage(width, width * 2), nn.AdaptiveAvgPool2d(4))
        self.trunk = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(width * 2 * 16, 256), nn.ReLU())
        self.heads = nn.ModuleDict({name: nn.Linear(256, k) for name, k in classes.items()})

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, 256): the feature space FID and precision/recall are measured in."""
        return self.trunk(self.features(x))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.embed(x)
        return {name: head(h) for name, head in self.heads.items()}


@dataclass
class Judge:
    net: JudgeNet
    classes: dict[str, list[str]]  # attribute -> class names (the training vocabulary)
    real_accuracy: dict[str, float]  # on the real holdout photos
    name: str = ""  # the cache file's stem: the data, epochs and width it was trained with


def _as_input(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1


@torch.no_grad()
def predict(net: JudgeNet, images: torch.Tensor, batch_size: int = 512) -> dict[str, torch.Tensor]:
    """uint8 (N, 3, S, S) -> {attribute: predicted class (N,)}."""
    net.eval()
    out: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(images), batch_size):
        for name, logits in net(_as_input(images[i : i + batch_size])).items():
            out.setdefault(name, []).append(logits.argmax(1))
    return {name: torch.cat(parts) for name, parts in out.items()}


def judge_accuracy(net: JudgeNet, images: torch.Tensor, labels: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per-attribute accuracy over rows whose label is known."""
    predicted = predict(net, images)
    result = {}
    for name, target in labels.items():
        known = target >= 0
        if name in predicted and known.any():
            result[name] = float((predicted[name][known] == target[known]).float().mean())
    return result


def train_judge(
    train: TrainingSet,
    holdout: TrainingSet,
    *,
    epochs: int = 4,
    batch_size: int = 128,
    seed: int = 0,
    classes: dict[str, list[str]] | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
    width: int = 32,
) -> Judge:
    """Train the judge on `train`'s images (real photos, or renders for CAS); measure it on `holdout`.

    on_epoch: called with (epochs done, epochs) after each epoch, for progress.
    """
    torch.manual_seed(seed)
    if classes is None:
        classes = {"category": train.vocabulary.categories, "color": train.vocabulary.colors}
        classes = {k: v for k, v in classes.items() if k in train.labels and len(v) > 1}
    train_labels = relabel(train, classes)
    net = JudgeNet({k: len(v) for k, v in classes.items()}, width=width)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * ((len(train) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    for epoch in range(epochs):
        if on_epoch is not None and epoch:
            on_epoch(epoch, epochs)
        net.train()
        for idx in torch.randperm(len(train)).split(batch_size):
            x = _as_input(train.images[idx])
            # flips teach shape, not pose; colour is never altered
            if torch.rand(()) < 0.5:
                x = x.flip(3)
            logits = net(x)
            loss = sum(F.cross_entropy(logits[k], train_labels[k][idx], ignore_index=-1) for k in classes)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
    holdout_labels = relabel(holdout, classes)
    return Judge(net.eval(), classes, judge_accuracy(net, holdout.images, holdout_labels))


def relabel(data: TrainingSet, classes: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    """Labels of `data` in the judge's class order (-1 where the value is unknown to the judge)."""
    out = {}
    for name, names in classes.items():
        index = {v: i for i, v in enumerate(names)}
        column = data.rows[name].tolist()
        out[name] = torch.tensor([index.get(v, -1) if v else -1 for v in column], dtype=torch.int64)
    return out


def load_or_train_judge(
    snapshot: Path,
    image_size: int,
    *,
    epochs: int = 4,
    width: int = 32,
    on_progress: Callable[[str], None] | None = None,
) -> Judge:
    """The judge for this snapshot's photos, cached per data fingerprint (photos loaded on a miss only).

    on_progress: called with a line per epoch while a judge is trained (minutes on a CPU).
    """
    fingerprint = training_fingerprint(snapshot, image_size)
    narrow = f"-w{width}" if width != 32 else ""  # the 32-wide judges cached before keep their names
    path = Snapshot(snapshot).cache_file(f"judge-{image_size}px-{fingerprint}-e{epochs}{narrow}.safetensors")
    if path.is_file():
        tensors, meta = load_checkpoint(path)
        net = JudgeNet({k: len(v) for k, v in meta["classes"].items()}, width=width)
        net.load_state_dict(tensors)
        return Judge(net.eval(), meta["classes"], meta["real_accuracy"], path.stem)
    train = load_training_set(snapshot, image_size, None, exclude_split="holdout")
    holdout = load_training_set(snapshot, image_size, None, exclude_split="train")
    say = on_progress or (lambda line: None)
    say(f"training the judge on {len(train):,} real photos, {epochs} epochs (cached afterwards)")
    judge = train_judge(
        train, holdout, epochs=epochs, width=width,
        on_epoch=lambda done, total: say(f"judge epoch {done}/{total} done"),
    )  # fmt: skip
    meta = {
        "classes": judge.classes,
        "real_accuracy": judge.real_accuracy,
        "train_fingerprint": train.fingerprint,
    }
    save_checkpoint(path, judge.net.state_dict(), meta)
    return dataclasses.replace(judge, name=path.stem)


@torch.no_grad()
def embed(net: JudgeNet, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """uint8 (N, 3, S, S) -> (N, 256) judge features."""
    net.eval()
    return torch.cat(
        [net.embed(_as_input(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
    ).numpy()
