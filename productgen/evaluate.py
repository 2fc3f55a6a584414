"""Does the image match its description? A judge classifier, and every number built on it.

The judge is a small CNN trained on the real photos of the catalog's train split, with one head
per controlled attribute (category, colour). Its accuracy on the real holdout photos is the
ceiling a generator is compared against: control ratio = accuracy on renders / accuracy on real.

    evaluate_run(run, snapshot)
      1. render every holdout description -> control accuracy and ratio; FID and precision/recall
         against the real holdout photos in the judge's feature space (real-vs-real beside them)
      2. CAS (Ravuri & Vinyals 2019): a fresh judge trained on renders only, tested on real photos
      3. paraphrases: prompts in words the catalog never used (productgen.paraphrase)
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from productgen.checkpoint import load_checkpoint, save_checkpoint
from productgen.conditioning import ConditionConfig, prompt_conditions
from productgen.dataset import TrainingSet, load_training_set, training_fingerprint
from productgen.metrics import frechet_distance, precision_recall
from productgen.paraphrase import paraphrase_set
from productgen.render import generate, noise_seed
from productgen.runs import TrainedGenerator, load_generator
from productgen.text import EncodeConfig, TextEncoder

__all__ = [
    "EvalConfig",
    "Evaluation",
    "Judge",
    "JudgeNet",
    "evaluate_run",
    "judge_accuracy",
    "load_or_train_judge",
    "score_renders",
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
) -> Judge:
    """Train the judge on `train`'s images (real photos, or renders for CAS); measure it on `holdout`."""
    torch.manual_seed(seed)
    if classes is None:
        classes = {"category": train.vocabulary.categories, "color": train.vocabulary.colors}
        classes = {k: v for k, v in classes.items() if k in train.labels and len(v) > 1}
    train_labels = _relabel(train, classes)
    net = JudgeNet({k: len(v) for k, v in classes.items()})
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * ((len(train) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    for _ in range(epochs):
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
    holdout_labels = _relabel(holdout, classes)
    return Judge(net.eval(), classes, judge_accuracy(net, holdout.images, holdout_labels))


def _relabel(data: TrainingSet, classes: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    """Labels of `data` in the judge's class order (-1 where the value is unknown to the judge)."""
    out = {}
    for name, names in classes.items():
        index = {v: i for i, v in enumerate(names)}
        column = data.rows[name].tolist()
        out[name] = torch.tensor([index.get(v, -1) if v else -1 for v in column], dtype=torch.int64)
    return out


def load_or_train_judge(snapshot: Path, image_size: int, *, epochs: int = 4) -> Judge:
    """The judge for this snapshot's photos, cached per data fingerprint (photos loaded on a miss only)."""
    conditioning = ConditionConfig()
    fingerprint = training_fingerprint(snapshot, image_size, conditioning)
    path = snapshot / ".cache" / f"judge-{image_size}px-{fingerprint}-e{epochs}.safetensors"
    if path.is_file():
        tensors, meta = load_checkpoint(path)
        net = JudgeNet({k: len(v) for k, v in meta["classes"].items()})
        net.load_state_dict(tensors)
        return Judge(net.eval(), meta["classes"], meta["real_accuracy"])
    train = load_training_set(snapshot, image_size, conditioning, exclude_split="holdout")
    holdout = load_training_set(snapshot, image_size, conditioning, exclude_split="train")
    judge = train_judge(train, holdout, epochs=epochs)
    meta = {
        "classes": judge.classes,
        "real_accuracy": judge.real_accuracy,
        "train_fingerprint": train.fingerprint,
    }
    save_checkpoint(path, judge.net.state_dict(), meta)
    return judge


@torch.no_grad()
def embed(net: JudgeNet, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """uint8 (N, 3, S, S) -> (N, 256) judge features."""
    net.eval()
    return torch.cat(
        [net.embed(_as_input(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
    ).numpy()


def render_rows(trained: TrainedGenerator, conditions: np.ndarray, skus: list[str]) -> torch.Tensor:
    """The images `productgen render` publishes for these rows (variant 0): uint8 (N, 3, S, S)."""
    seeds = [noise_seed(sku, trained.version) for sku in skus]
    parts = [generate(trained, conditions[i : i + 512], seeds[i : i + 512]) for i in range(0, len(skus), 512)]
    return torch.from_numpy(np.concatenate(parts)).permute(0, 3, 1, 2).contiguous()


def score_renders(
    judge: Judge,
    renders: torch.Tensor,
    labels: dict[str, torch.Tensor],
    real_holdout: torch.Tensor,
    real_train: torch.Tensor,
    *,
    k: int = 3,
    rows: int = 5000,
) -> dict[str, object]:
    """Judge renders against their descriptions' labels and against the real photos' distribution.

    accuracy/ratio: does each render show what its description says (vs the judge on real photos).
    fid, precision, recall: renders vs real holdout photos in the judge's feature space; the same
    numbers for real train vs real holdout photos are the floor (what "as real as real" scores).
    Accuracy counts every render; the distribution metrics use the first `rows` of each set.
    """
    accuracy = judge_accuracy(judge.net, renders, labels)
    fake, real = embed(judge.net, renders[:rows]), embed(judge.net, real_holdout[:rows])
    other = embed(judge.net, real_train[:rows])
    floor = precision_recall(real, other, k)
    return {
        "rows": len(renders),
        "accuracy": accuracy,
        "ratio": {a: accuracy[a] / judge.real_accuracy[a] for a in accuracy if judge.real_accuracy.get(a)},
        "fid": frechet_distance(fake, real),
        "fid_floor": frechet_distance(other, real),
        **precision_recall(real, fake, k),
        "precision_floor": floor["precision"],
        "recall_floor": floor["recall"],
    }


def classification_accuracy_score(
    renders: torch.Tensor,
    train: TrainingSet,
    holdout: TrainingSet,
    classes: dict[str, list[str]],
    epochs: int,
) -> dict[str, float]:
    """CAS (Ravuri & Vinyals 2019): a fresh judge trained on renders only, tested on real holdout photos."""
    fake = dataclasses.replace(train, images=renders)
    return train_judge(fake, holdout, epochs=epochs, classes=classes).real_accuracy


def paraphrase_control(
    judge: Judge, trained: TrainedGenerator, encoder: TextEncoder, per_pair: int = 2
) -> dict:
    """Render prompts in words the catalog never used and judge them against their known attributes."""
    prompts = paraphrase_set(per_pair)
    texts = [p.text for p in prompts]
    conditions, read = prompt_conditions(texts, encoder, trained.vocabulary, trained.conditioning)
    renders = render_rows(trained, conditions, [f"paraphrase-{i}" for i in range(len(prompts))])
    index = {name: {v: i for i, v in enumerate(values)} for name, values in judge.classes.items()}
    labels = {
        name: torch.tensor([index[name].get(getattr(p, name), -1) for p in prompts]) for name in judge.classes
    }
    predicted = predict(judge.net, renders)
    right = {name: (predicted[name] == labels[name]) & (labels[name] >= 0) for name in labels}
    hex_rows = torch.tensor([p.kind == "hex" for p in prompts])
    read_right = [r["category"] == p.category for r, p in zip(read, prompts, strict=True)]
    return {
        "prompts": len(prompts),
        "accuracy": {name: float(r[labels[name] >= 0].float().mean()) for name, r in right.items()},
        "hex_color_accuracy": float(right["color"][hex_rows].float().mean()) if "color" in right else None,
        # how often the text side named the right category; the rest of the gap is the generator's
        "category_read": float(np.mean(read_right)),
        "examples": [
            {"text": prompts[i].text, "color": prompts[i].color, "category": prompts[i].category,
             **{f"judged_{n}": judge.classes[n][int(predicted[n][i])] for n in judge.classes}}
            for i in range(0, len(prompts), max(1, len(prompts) // 12))
        ],
    }  # fmt: skip


@dataclass(frozen=True)
class EvalConfig:
    """How much to render and train while evaluating (more rows: tighter numbers, more minutes)."""

    judge_epochs: int = 12
    holdout_rows: int | None = None  # holdout descriptions rendered; None: all
    feature_rows: int = 5000  # rows per set for FID and precision/recall
    cas_rows: int = 10000  # train descriptions rendered to train the CAS classifier
    cas_epochs: int = 4
    paraphrases_per_pair: int = 2
    contact_rows: int = 24
    k: int = 3  # neighbours for precision/recall


@dataclass
class Evaluation:
    """eval.json's content, plus the images the report shows."""

    metrics: dict[str, object]
    contact: list[tuple[np.ndarray, np.ndarray, str]]  # (real HWC, render HWC, title)


def _subset(data: TrainingSet, index: torch.Tensor) -> TrainingSet:
    rows = data.rows.iloc[index.numpy()].reset_index(drop=True)
    labels = {k: v[index] for k, v in data.labels.items()}
    return dataclasses.replace(
        data, images=data.images[index], conditions=data.conditions[index], rows=rows, labels=labels
    )


def evaluate_run(
    run_dir: Path, snapshot: Path, config: EvalConfig = EvalConfig(), *, encoder: TextEncoder | None = None
) -> Evaluation:
    """Every quality number for one trained model on one snapshot's real photos."""
    started = time.perf_counter()
    trained = load_generator(run_dir)
    size = trained.generator.config.image_size
    judge = load_or_train_judge(snapshot, size, epochs=config.judge_epochs)
    holdout = load_training_set(snapshot, size, trained.conditioning, exclude_split="train")
    train = load_training_set(snapshot, size, trained.conditioning, exclude_split="holdout")
    if config.holdout_rows is not None:
        holdout = _subset(holdout, torch.arange(min(config.holdout_rows, len(holdout))))
    picked = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))

    # 1. renders of the holdout descriptions vs the real holdout photos
    renders = render_rows(trained, holdout.conditions.numpy(), holdout.rows["sku"].tolist())
    f = config.feature_rows
    labels = _relabel(holdout, judge.classes)
    control = score_renders(
        judge, renders, labels, holdout.images, train.images[picked[:f]], k=config.k, rows=f
    )

    # 2. CAS: a classifier that only ever saw renders, tested on real photos
    cas_set = _subset(train, picked[: config.cas_rows])
    cas_renders = render_rows(trained, cas_set.conditions.numpy(), cas_set.rows["sku"].tolist())
    cas = classification_accuracy_score(cas_renders, cas_set, holdout, judge.classes, config.cas_epochs)

    # 3. words the catalog never used
    encoder = encoder or TextEncoder(EncodeConfig(model=trained.text_model))
    paraphrase = paraphrase_control(judge, trained, encoder, config.paraphrases_per_pair)

    n = min(config.contact_rows, len(holdout))
    contact = [
        (
            holdout.images[i].permute(1, 2, 0).numpy(),
            renders[i].permute(1, 2, 0).numpy(),
            holdout.rows["title"][i],
        )
        for i in range(n)
    ]
    metrics = {
        "model_version": trained.version,
        "run": str(run_dir),
        "snapshot": str(snapshot),
        "family": trained.generator.config.family,
        "conditioning": list(trained.conditioning.parts),
        "judge": {"real_accuracy": judge.real_accuracy, "epochs": config.judge_epochs},
        "holdout": control,
        "cas": {"accuracy": cas, "real_accuracy": judge.real_accuracy, "train_rows": len(cas_set)},
        "paraphrase": paraphrase,
        "gate": gate_metrics(control, paraphrase),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return Evaluation(metrics, contact)


def gate_metrics(holdout: dict, paraphrase: dict) -> dict[str, float]:
    """The few numbers the promotion gate compares (see productgen.registry.GateConfig)."""
    gate = {f"{a}_ratio": round(v, 4) for a, v in holdout["ratio"].items()}
    gate |= {f"{a}_accuracy": round(v, 4) for a, v in holdout["accuracy"].items()}
    gate |= {f"paraphrase_{a}_accuracy": round(v, 4) for a, v in paraphrase["accuracy"].items()}
    gate["fid"] = round(holdout["fid"], 4)
    return gate
