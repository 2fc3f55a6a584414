"""The model registry in the object store, and the gate that keeps a worse model from renders.

    STORE/models/<version>/model.safetensors, run.json, eval.json, eval.md, contact-sheet.png
    STORE/models/current          JSON: the promoted version, when, its gate numbers
    STORE/models/history.jsonl    one line per promotion decision (promoted, refused, forced)

`promote` compares the candidate's gate numbers (eval.json) with the current model's: every
accuracy and ratio must be at least as high, and FID at least as low, within the tolerances of
GateConfig. Numbers compare only when both were measured the same way (the evaluation's
`protocol`: the judge, the holdout photos, how much was rendered). When the current model was
evaluated another way, the caller evaluates it again this way (`evaluate.evaluate_baseline`) and
passes that as the baseline; without one the candidate is refused, saying so. Renders use
`models/current` unless a run is named.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from productgen.atomic import atomic_path
from productgen.dataset import training_fingerprint
from productgen.runs import PUBLISHED_FILES, RunFolder, load_generator
from productgen.storage import ObjectStore, StorageError

__all__ = [
    "RETRAIN_MODES",
    "GateConfig",
    "PromotedReport",
    "Promotion",
    "current_model",
    "differences",
    "fetch_model",
    "gate_decision",
    "promote",
    "promoted_report",
    "retrain_reason",
]

CURRENT, HISTORY = "models/current", "models/history.jsonl"
_MODEL_FILES = (RunFolder.MODEL, RunFolder.RUN_JSON)  # what rendering needs


_VERSION = re.compile(r"[0-9a-f]{12}")  # runs.load_generator's version: 12 hex digits of a SHA-256


def _model_key(version: str, name: str) -> str:
    return f"models/{_checked_version(version)}/{name}"


def _checked_version(version: object, where: str = "model version") -> str:
    """A version from the store or the user, checked before it names a key or a folder."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        shown = repr(version)[:80]
        raise StorageError(f"{where} {shown} is not a model version (12 hex digits); the pointer is damaged")
    return version


@dataclass(frozen=True)
class GateConfig:
    """How much worse than the current model a candidate may be and still be promoted."""

    tolerance: float = 0.01  # accuracies and ratios: absolute slack (0.01 = one point)
    fid_tolerance: float = 0.05  # FID: relative slack (0.05 = 5% higher)
    minimum: dict[str, float] = field(default_factory=dict)  # absolute floors, e.g. {"color_accuracy": 0.9}


@dataclass
class Promotion:
    version: str
    promoted: bool
    forced: bool
    previous: str | None
    reasons: list[str]  # why it was refused (or what --force overrode)

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def gate_decision(
    candidate: dict[str, float], current: dict[str, float] | None, config: GateConfig
) -> list[str]:
    """Reasons to refuse the candidate; an empty list means it may be promoted."""
    reasons = [
        f"{name} {candidate.get(name, 0):.4f} is below the minimum {floor:.4f}"
        for name, floor in config.minimum.items()
        if candidate.get(name, 0) < floor
    ]
    for name, before in (current or {}).items():
        if name not in candidate:
            reasons.append(f"{name} is missing from the candidate's evaluation")
        elif name == "fid" and candidate[name] > before * (1 + config.fid_tolerance):
            reasons.append(f"fid {candidate[name]:.3f} is worse than the current model's {before:.3f}")
        elif name != "fid" and candidate[name] < before - config.tolerance:
            reasons.append(f"{name} {candidate[name]:.4f} is worse than the current model's {before:.4f}")
    return reasons


_MAX_POINTER = 1 << 20  # bytes: a pointer or an eval.json is a few KB


def _read_json(store: ObjectStore, key: str) -> object | None:
    """A small JSON object from the store (None when absent); bounded and parsed, never trusted."""
    head = store.head(key)
    if head is None:
        return None
    if head.size > _MAX_POINTER:
        raise StorageError(f"{store.uri}/{key} is {head.size:,} bytes; a registry file is a few KB")
    try:
        return json.loads(store.get(key))
    except (ValueError, RecursionError):
        raise StorageError(f"{store.uri}/{key} is not valid JSON; promote a model again") from None


def differences(first: object, second: object) -> list[str]:
    """How two evaluation protocols differ ('judge_width 32 vs 16'); [] when they are the same."""
    if not isinstance(first, dict) or not isinstance(second, dict):
        return [] if first == second else ["protocol not recorded"]

    def shown(value: object) -> str:  # a pointer is untrusted: bounded in what is said back
        text = str(value)
        return text if len(text) <= 40 else text[:37] + "..."

    return [
        f"{shown(key)} {shown(first.get(key))} vs {shown(second.get(key))}"
        for key in dict.fromkeys([*first, *second])
        if first.get(key) != second.get(key)
    ]


def _numbers(gate: object) -> bool:
    """Whether gate numbers read from the store are a JSON object of finite numbers."""
    return isinstance(gate, dict) and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in gate.values()
    )


def _reference(current: dict, protocol: object, baseline: dict | None) -> tuple[dict | None, str | None]:
    """The current model's gate numbers measured like the candidate's, or why there are none."""
    if not differences(current.get("protocol"), protocol):
        if not _numbers(current.get("gate")):
            damaged = f"the gate numbers of the current model {current['version']} are damaged"
            return None, f"{damaged}; promote with --force to replace it"
        return current["gate"], None
    mine = bool(baseline) and baseline.get("version") == current["version"]
    if mine and baseline.get("unmeasurable"):
        why = str(baseline["unmeasurable"])[:300]
        return None, (
            f"the current model {current['version']} cannot be evaluated on this snapshot ({why}), so "
            "nothing compares: --force to replace it"
        )
    if mine and not differences(baseline.get("protocol"), protocol):
        return baseline["gate"], None
    differ = "; ".join(differences(current.get("protocol"), protocol)[:3])
    return None, (
        f"the current model {current['version']} was evaluated another way ({differ}), so its numbers "
        "do not compare: evaluate it this way too (promote --snapshot SNAPSHOT) or --force"
    )


def promote(
    run_dir: Path,
    store: ObjectStore,
    config: GateConfig = GateConfig(),
    *,
    force: bool = False,
    baseline: dict | None = None,
) -> Promotion:
    """Upload the run's model and report, and point models/current at it if the gate allows.

    baseline: the current model evaluated the candidate's way ({"version", "protocol", "gate"},
    from evaluate.evaluate_baseline); used when the current model's own numbers were measured
    another way.
    """
    folder = RunFolder(run_dir)
    run = folder.read_run()
    evaluation = folder.read_evaluation()
    version = load_generator(run_dir).version
    if evaluation["model_version"] != version:
        raise ValueError(
            f"{folder.eval_json} is for model {evaluation['model_version']}, not {version}; evaluate again"
        )
    current = current_model(store)
    previous = current["version"] if current else None
    if previous == version:
        return Promotion(version, True, False, previous, ["already the current model"])

    reference, incomparable = (
        _reference(current, evaluation.get("protocol"), baseline) if current else (None, None)
    )
    reasons = gate_decision(evaluation["gate"], reference, config) + ([incomparable] if incomparable else [])
    promoted = force or not reasons
    if promoted:
        for name in PUBLISHED_FILES:
            if folder.file(name).is_file():
                store.put(_model_key(version, name), folder.file(name).read_bytes())
        pointer = {
            "version": version, "promoted_at": datetime.now(UTC).isoformat(), "forced": bool(reasons),
            "run": str(run_dir), "gate": evaluation["gate"], "data_fingerprint": run["data_fingerprint"],
            "image_size": run["image_size"], "conditioning": run["conditioning"],
            "protocol": evaluation.get("protocol"),
        }  # fmt: skip
        store.put(CURRENT, json.dumps(pointer, indent=2).encode(), content_type="application/json")
    decision = "forced" if promoted and reasons else ("promoted" if promoted else "refused")
    entry = {"version": version, "at": datetime.now(UTC).isoformat(), "decision": decision,
             "previous": previous, "reasons": reasons, "gate": evaluation["gate"]}  # fmt: skip
    history = store.get(HISTORY) if store.head(HISTORY) is not None else b""
    store.put(HISTORY, history + json.dumps(entry).encode() + b"\n", content_type="application/x-ndjson")
    return Promotion(version, promoted, promoted and bool(reasons), previous, reasons)


RETRAIN_MODES = ("auto", "always", "never")


def retrain_reason(mode: str, store: ObjectStore, snapshot: Path) -> str | None:
    """Why a new model should be trained on `snapshot` (None: render with the promoted one).

    auto: when no model is promoted or its training data fingerprint differs from the snapshot's.
    """
    if mode not in RETRAIN_MODES:
        raise ValueError(f"retrain={mode!r}: use one of {', '.join(RETRAIN_MODES)}")
    current = current_model(store)
    if mode == "always":
        return "retrain=always"
    if current is None:
        if mode == "never":
            raise StorageError(f"{store.uri}: retrain=never but no model is promoted; train and promote one")
        return "no promoted model yet"
    if mode == "never":
        return None
    now = training_fingerprint(snapshot, current["image_size"], current["conditioning"])
    if now != current["data_fingerprint"]:
        return f"training data changed (fingerprint {current['data_fingerprint']} -> {now})"
    return None


def current_model(store: ObjectStore) -> dict | None:
    """The models/current pointer, or None before the first promotion; its fields are checked."""
    pointer = _read_json(store, CURRENT)
    if pointer is None:
        return None
    where = f"{store.uri}/{CURRENT}"
    if not isinstance(pointer, dict):
        raise StorageError(f"{where} is not a JSON object; promote a model again")
    _checked_version(pointer.get("version"), f"{where}: version")
    size, parts = pointer.get("image_size"), pointer.get("conditioning")
    if not isinstance(size, int) or not 8 <= size <= 1024 or not isinstance(parts, list):
        raise StorageError(f"{where}: image_size or conditioning is missing or wrong; promote a model again")
    return pointer


def fetch_model(store: ObjectStore, cache_dir: Path, version: str | None = None) -> Path:
    """A local run folder for the promoted model (or `version`), downloaded once into cache_dir."""
    if version is None:
        current = current_model(store)
        if current is None:
            raise StorageError(
                f"{store.uri}: no promoted model (models/current); pass --model RUN_DIR or promote one"
            )
        version = current["version"]
    target = RunFolder(cache_dir / _checked_version(version))
    for name in _MODEL_FILES:
        if not target.file(name).is_file():
            with atomic_path(target.file(name)) as tmp:
                tmp.write_bytes(store.get(_model_key(version, name)))
    if load_generator(target.root).version != version:
        raise StorageError(f"{store.uri}/models/{version}: the weights do not hash to {version}")
    return target.root


@dataclass(frozen=True)
class PromotedReport:
    """The promoted model, its evaluation and a link to its contact sheet."""

    current: dict  # the models/current pointer
    metrics: dict  # its eval.json
    contact_sheet: str  # a URL (presigned for S3)


def promoted_report(store: ObjectStore) -> PromotedReport:
    """What the promoted model was measured at; StorageError before the first promotion."""
    current = current_model(store)
    if current is None:
        raise StorageError(f"{store.uri}: no promoted model (models/current)")
    version = current["version"]
    metrics = _read_json(store, _model_key(version, RunFolder.EVAL_JSON))
    if not isinstance(metrics, dict):
        raise StorageError(f"{store.uri}: model {version} has no readable evaluation")
    sheet = store.url(_model_key(version, RunFolder.CONTACT_SHEET))
    return PromotedReport(current, metrics, sheet)
