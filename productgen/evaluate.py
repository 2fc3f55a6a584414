"""Does the image match its description? The evaluation protocol, every number built on the judge.

The judge (productgen.judge) reads category and colour from photos; its accuracy on the real
holdout photos is the ceiling a generator is compared against: control ratio = accuracy on
renders / accuracy on real.

    evaluate_run(run, snapshot)
      1. render every holdout description -> control accuracy and ratio; FID and precision/recall
         against the real holdout photos in the judge's feature space (real-vs-real beside them)
      2. CAS (Ravuri & Vinyals 2019): a fresh judge trained on renders only, tested on real photos,
         beside the same judge trained on the same rows' real photos (its ceiling)
      3. paraphrases: prompts in words the catalog never used (productgen.paraphrase)

Two settings (EVALUATIONS): "full" renders every holdout description with a 32-wide judge;
"quick" (`make demo`) renders a sample of the holdout rows stratified by (category, colour) with
a narrower judge, in under 2 minutes on 2 cores. Every accuracy comes with its 95% interval
(Wilson), so a sample's numbers say how far they can be trusted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from productgen.atomic import write_text_atomic
from productgen.dataset import TrainingSet, load_training_set, training_fingerprint
from productgen.judge import Judge, embed, judge_accuracy, load_or_train_judge, predict, relabel, train_judge
from productgen.metrics import frechet_distance, precision_recall
from productgen.paraphrase import paraphrase_set
from productgen.registry import current_model, differences, fetch_model
from productgen.render import RenderPipeline
from productgen.snapshot import Snapshot
from productgen.storage import ObjectStore
from productgen.text import TextEncoder

__all__ = [
    "EVALUATIONS", "EvalConfig", "Evaluation", "cas_reference", "evaluate_baseline", "evaluate_run",
    "protocol", "render_rows", "score_renders", "settings_of", "stratified", "wilson",
]  # fmt: skip


def _channels_first(images: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 renders -> (N, 3, S, S), the judge's layout."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def render_rows(pipeline: RenderPipeline, conditions: np.ndarray, skus: list[str]) -> torch.Tensor:
    """The images `productgen render` publishes for these rows (variant 0): uint8 (N, 3, S, S)."""
    return _channels_first(pipeline(conditions=conditions, seeds=pipeline.seeds(skus)).images)


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
    known = {a: int((labels[a] >= 0).sum()) for a in accuracy}
    interval = {a: wilson(accuracy[a], known[a]) for a in accuracy}
    fake, real = embed(judge.net, renders[:rows]), embed(judge.net, real_holdout[:rows])
    other = embed(judge.net, real_train[:rows])
    floor = precision_recall(real, other, k)
    return {
        "rows": len(renders),
        "accuracy": accuracy,
        "ratio": {a: accuracy[a] / judge.real_accuracy[a] for a in accuracy if judge.real_accuracy.get(a)},
        "ci95": interval,  # the accuracy's 95% interval over this many rows
        "ratio_ci95": {
            a: [bound / judge.real_accuracy[a] for bound in interval[a]]
            for a in accuracy
            if judge.real_accuracy.get(a)
        },
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
    width: int = 32,
) -> dict[str, float]:
    """CAS (Ravuri & Vinyals 2019): a fresh judge trained on renders only, tested on real holdout photos."""
    fake = dataclasses.replace(train, images=renders)
    return train_judge(fake, holdout, epochs=epochs, classes=classes, width=width).real_accuracy


_REFERENCE_BYTES = 64 * 1024  # a cached reference is a few numbers; anything larger is not one


def cas_reference(
    snapshot: Path,
    rows: TrainingSet,
    holdout: TrainingSet,
    classes: dict[str, list[str]],
    epochs: int,
    width: int = 32,
) -> dict[str, float]:
    """CAS's ceiling: the same classifier (same rows, epochs, width and seed) trained on the real
    photos of the rows CAS renders, tested on the same holdout photos. CAS's classifier sees a few
    thousand images for a few epochs, so even real photos do not reach the judge's accuracy; a CAS
    is read against this. It depends on the snapshot and the protocol, never on the model, so it
    is kept in the snapshot's cache (a damaged or foreign cache file is computed again)."""
    identity = [rows.fingerprint, holdout.fingerprint, list(rows.rows["sku"]), list(holdout.rows["sku"])]
    key = hashlib.sha256(json.dumps([*identity, classes, epochs, width]).encode()).hexdigest()[:20]
    path = Snapshot(snapshot).cache_file(f"cas-reference-{key}.json")
    cached = _read_reference(path, set(classes))
    if cached is not None:
        return cached
    accuracy = classification_accuracy_score(rows.images, rows, holdout, classes, epochs, width)
    write_text_atomic(path, json.dumps({"accuracy": accuracy}) + "\n")
    return accuracy


def _read_reference(path: Path, attributes: set[str]) -> dict[str, float] | None:
    """A cached reference's accuracies; None when absent or not what `cas_reference` writes."""
    try:
        with path.open("rb") as f:
            accuracy = json.loads(f.read(_REFERENCE_BYTES + 1)).get("accuracy")
    except (OSError, ValueError, AttributeError):
        return None
    valid = (
        isinstance(accuracy, dict)
        and len(accuracy) > 0
        and set(accuracy) <= attributes
        and all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in accuracy.values())
    )
    return accuracy if valid else None


def paraphrase_control(
    judge: Judge, pipeline: RenderPipeline, per_pair: int = 2, half: str = "heldout"
) -> dict:
    """Render prompts in words the catalog never used and judge them against their known attributes.

    half: "heldout" words were never looked at while building the attribute reader; "dev" were.
    """
    prompts = paraphrase_set(per_pair, half=half)
    texts = [p.text for p in prompts]
    output = pipeline(prompts=texts, seeds=pipeline.seeds([f"paraphrase-{i}" for i in range(len(prompts))]))
    renders, read = _channels_first(output.images), output.read
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


def wilson(p: float, n: int, z: float = 1.96) -> list[float]:
    """The 95% Wilson score interval of a proportion p measured on n rows."""
    if n <= 0:
        return [0.0, 1.0]
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(float(max(0.0, centre - half)), 4), round(float(min(1.0, centre + half)), 4)]


def stratified(
    rows: pd.DataFrame, n: int, by: tuple[str, ...] = ("category", "color"), seed: int = 0
) -> np.ndarray:
    """n sorted row positions, each stratum of `by` in proportion to its size (largest remainders),
    picked at random within it: a sample whose mix of categories and colours is the holdout's own."""
    if n >= len(rows):
        return np.arange(len(rows))
    rng = np.random.default_rng(seed)
    groups = list(rows.groupby(list(by), dropna=False, sort=True).indices.values())
    exact = np.array([len(g) for g in groups], np.float64) * n / len(rows)
    counts = np.floor(exact).astype(int)
    counts[np.argsort(counts - exact, kind="stable")[: n - counts.sum()]] += 1  # largest remainders
    picked = [rng.choice(g, size=k, replace=False) for g, k in zip(groups, counts, strict=True) if k]
    return np.sort(np.concatenate(picked))


@dataclass(frozen=True)
class EvalConfig:
    """How much to render and train while evaluating (more rows: tighter numbers, more minutes)."""

    judge_epochs: int = 12
    judge_width: int = 32  # the judge's first stage's channels (16: 2.4x faster, 2 points less accurate)
    holdout_rows: int | None = None  # holdout descriptions rendered, stratified; None: all
    feature_rows: int = 5000  # rows per set for FID and precision/recall
    cas_rows: int = 10000  # train descriptions rendered to train the CAS classifier
    # CAS's classifier trains until real photos stop teaching it much: on the demo's 10,000 rows
    # the same classifier on real photos reads 81.7% at 4 epochs, 85.0% at 8, 86.5% at 12 (README)
    cas_epochs: int = 12
    paraphrases_per_pair: int = 2
    contact_rows: int = 24
    k: int = 3  # neighbours for precision/recall


# full: every holdout row (10,000 in the demo) and the 32-wide judge; quick: `make demo`'s, measured
# in README ("The wait a user sees")
EVALUATIONS = {
    "full": EvalConfig(),
    "quick": EvalConfig(judge_width=16, holdout_rows=2000, feature_rows=2000, cas_rows=5000, cas_epochs=3),
}


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
    run_dir: Path,
    snapshot: Path,
    config: EvalConfig = EvalConfig(),
    *,
    encoder: TextEncoder | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Every quality number for one trained model on one snapshot's real photos.

    on_progress: called with a line as each step starts and ends (with seconds so far).
    """
    started = time.perf_counter()

    def say(line: str) -> None:
        if on_progress is not None:
            on_progress(f"{line} ({time.perf_counter() - started:.0f} s)")

    pipeline = RenderPipeline.from_run(run_dir, encoder=encoder)
    pipeline.check_snapshot(snapshot)  # rows embedded by another text model would judge garbage
    conditioning = pipeline.conditioner.config
    size = pipeline.image_size
    judge = load_or_train_judge(
        snapshot, size, epochs=config.judge_epochs, width=config.judge_width, on_progress=say
    )
    say("judge ready; rendering the holdout descriptions")
    holdout = load_training_set(snapshot, size, conditioning, exclude_split="train")
    train = load_training_set(snapshot, size, conditioning, exclude_split="holdout")
    population = len(holdout)
    if config.holdout_rows is not None:
        holdout = _subset(holdout, torch.from_numpy(stratified(holdout.rows, config.holdout_rows)))
    picked = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))

    # 1. renders of the holdout descriptions vs the real holdout photos
    renders = render_rows(pipeline, holdout.conditions.numpy(), holdout.rows["sku"].tolist())
    f = config.feature_rows
    labels = relabel(holdout, judge.classes)
    control = score_renders(
        judge, renders, labels, holdout.images, train.images[picked[:f]], k=config.k, rows=f
    )

    say(f"rendered and judged {len(renders):,} holdout descriptions; training CAS on renders")
    # 2. CAS: a classifier that only ever saw renders, tested on real photos
    cas_set = _subset(train, picked[: config.cas_rows])
    cas_renders = render_rows(pipeline, cas_set.conditions.numpy(), cas_set.rows["sku"].tolist())
    cas = classification_accuracy_score(
        cas_renders, cas_set, holdout, judge.classes, config.cas_epochs, config.judge_width
    )
    say("CAS trained; its reference, the same classifier on real photos (cached per snapshot)")
    reference = cas_reference(
        snapshot, cas_set, holdout, judge.classes, config.cas_epochs, config.judge_width
    )

    # 3. words the catalog never used
    say("CAS done; rendering paraphrases")
    paraphrase = paraphrase_control(judge, pipeline, config.paraphrases_per_pair)
    dev = paraphrase_control(judge, pipeline, config.paraphrases_per_pair, half="dev")
    paraphrase["dev"] = {k: dev[k] for k in ("prompts", "accuracy", "category_read")}

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
        "model_version": pipeline.version,
        "run": str(run_dir),
        "snapshot": str(snapshot),
        "family": pipeline.generator.config.family,
        "conditioning": list(conditioning.parts),
        "judge": {
            "real_accuracy": judge.real_accuracy,
            "epochs": config.judge_epochs,
            "width": config.judge_width,
        },
        "holdout_population": population,  # holdout rows the rendered ones were sampled from
        "protocol": protocol(config, judge, training_fingerprint(snapshot, size, exclude_split="train")),
        "holdout": control,
        "cas": {
            "accuracy": cas,
            "real_accuracy": judge.real_accuracy,
            "train_rows": len(cas_set),
            "reference": reference,  # the same classifier trained on those rows' real photos
            "ratio": {a: cas[a] / reference[a] for a in cas if reference.get(a)},
        },
        "paraphrase": paraphrase,
        "gate": gate_metrics(control, paraphrase),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return Evaluation(metrics, contact)


def evaluate_baseline(
    store: ObjectStore,
    candidate: dict,
    snapshot: Path,
    cache_dir: Path,
    *,
    encoder: TextEncoder | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> dict | None:
    """The promoted model evaluated the way `candidate` (an eval.json) was, for `registry.promote`.

    None when no model is promoted or its own numbers were measured the same way already; else
    {"version", "protocol", "gate"} from evaluating it on `snapshot` with the candidate's settings
    (its judge is cached, so this costs the rendering only), or {"version", "unmeasurable": why}
    when it cannot read this snapshot (another text model): the gate then refuses unless forced.
    """
    current = current_model(store)
    if current is None or not differences(current.get("protocol"), candidate.get("protocol")):
        return None
    config = settings_of(candidate)
    run = fetch_model(store, cache_dir, current["version"])
    try:
        metrics = evaluate_run(run, snapshot, config, encoder=encoder, on_progress=on_progress).metrics
    except ValueError as e:
        return {"version": current["version"], "unmeasurable": str(e)}
    return {key: metrics[key] for key in ("protocol", "gate")} | {"version": current["version"]}


# the settings that change an evaluation's numbers (how many contact rows are drawn does not)
_COMPARED = tuple(f.name for f in dataclasses.fields(EvalConfig) if f.name != "contact_rows")


def settings_of(evaluation: dict) -> EvalConfig:
    """The settings an eval.json was measured with (its protocol), to measure another model alike."""
    recorded = evaluation.get("protocol")
    if not isinstance(recorded, dict):
        raise ValueError(
            "the evaluation records no protocol (evaluated before it did); evaluate the run again"
        )
    values = {name: recorded.get(name) for name in _COMPARED}

    def valid(name: str, value: object) -> bool:
        return (isinstance(value, int) and not isinstance(value, bool) and value > 0) or (
            name == "holdout_rows" and value is None
        )

    if not all(valid(name, value) for name, value in values.items()):
        raise ValueError(f"the evaluation's protocol is malformed: {values}; evaluate the run again")
    return EvalConfig(**values)


def protocol(config: EvalConfig, judge: Judge, holdout: str) -> dict[str, object]:
    """What two evaluations must share for their numbers to compare: the judge, the holdout photos
    (their fingerprint) and how much was rendered. The promotion gate compares only equal protocols."""
    return {"judge": judge.name, "holdout": holdout, **{k: getattr(config, k) for k in _COMPARED}}


def gate_metrics(holdout: dict, paraphrase: dict) -> dict[str, float]:
    """The few numbers the promotion gate compares (see productgen.registry.GateConfig)."""
    gate = {f"{a}_ratio": round(v, 4) for a, v in holdout["ratio"].items()}
    gate |= {f"{a}_accuracy": round(v, 4) for a, v in holdout["accuracy"].items()}
    gate |= {f"paraphrase_{a}_accuracy": round(v, 4) for a, v in paraphrase["accuracy"].items()}
    gate["fid"] = round(holdout["fid"], 4)
    return gate
