"""The registry and its gate: a worse model is refused, --force is logged, renders use the promoted one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from productgen.evaluate import EvalConfig, evaluate_baseline, evaluate_run
from productgen.registry import GateConfig, current_model, fetch_model, gate_decision, promote
from productgen.runs import load_generator
from productgen.snapshot import Snapshot
from productgen.storage import S3Settings, StorageError, open_store
from tests.conftest import train_tiny

GATE = {"category_ratio": 0.8, "color_accuracy": 0.95, "paraphrase_color_accuracy": 0.9, "fid": 2.0}


def _evaluated(run: Path, target: Path, gate: dict[str, float]) -> Path:
    """A copy of `run` with an eval.json carrying these gate numbers (evaluation itself is tested
    in test_evaluate.py; here only the decision matters)."""
    shutil.copytree(run, target)
    version = load_generator(target).version
    (target / "eval.json").write_text(json.dumps({"model_version": version, "gate": gate}))
    return target


@pytest.fixture(scope="module")
def other_run(tiny_snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second model (different weights, so a different version)."""
    return train_tiny(tiny_snapshot, tmp_path_factory.mktemp("other") / "run", steps=5, seed=1)


def test_gate_compares_each_number_in_its_direction() -> None:
    config = GateConfig(tolerance=0.01, fid_tolerance=0.05)
    assert gate_decision(GATE, None, config) == []
    assert gate_decision({**GATE, "color_accuracy": 0.945}, GATE, config) == []  # within tolerance
    worse = gate_decision({**GATE, "category_ratio": 0.7, "fid": 2.5}, GATE, config)
    assert len(worse) == 2 and "category_ratio" in worse[0] and "fid" in worse[1]
    assert gate_decision({**GATE, "fid": 1.0, "category_ratio": 0.9}, GATE, config) == []  # better
    floors = gate_decision(GATE, None, GateConfig(minimum={"color_accuracy": 0.99}))
    assert floors == ["color_accuracy 0.9500 is below the minimum 0.9900"]


@pytest.mark.slow
def test_promote_refuses_worse_logs_force_and_renders_use_current(
    tiny_snapshot: Path, tiny_run: Path, other_run: Path, tmp_path: Path, s3_env: S3Settings
) -> None:
    store = open_store("s3://registry/catalog", s3_env, create_bucket=True)
    good = _evaluated(tiny_run, tmp_path / "good", GATE)
    worse = _evaluated(other_run, tmp_path / "worse", {**GATE, "category_ratio": 0.5})

    first = promote(good, store)
    assert first.promoted and first.previous is None
    refused = promote(worse, store)
    assert not refused.promoted and "category_ratio 0.5000 is worse" in refused.reasons[0]
    assert current_model(store)["version"] == first.version

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "productgen", *args], capture_output=True, text=True)

    assert cli("promote", str(worse), "--store", "s3://registry/catalog").returncode == 1
    forced = cli("promote", str(worse), "--store", "s3://registry/catalog", "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout.splitlines()[-1])["forced"] is True
    assert current_model(store)["version"] == refused.version and current_model(store)["forced"]
    history = [json.loads(line) for line in store.get("models/history.jsonl").splitlines()]
    assert [h["decision"] for h in history] == ["promoted", "refused", "refused", "forced"]

    # render with no --model: the promoted (forced) model, fetched from the store
    rendered = cli("render", str(tiny_snapshot), "--dest", "s3://registry/catalog", "--json")
    assert rendered.returncode == 0, rendered.stderr
    assert json.loads(rendered.stdout.splitlines()[-1])["model_version"] == refused.version
    assert load_generator(fetch_model(store, tmp_path / "cache")).version == refused.version


def _measured(run: Path, target: Path, snapshot: Path, config: EvalConfig, encoder) -> Path:
    """A copy of `run` evaluated for real with `config`."""
    shutil.copytree(run, target)
    metrics = evaluate_run(target, snapshot, config, encoder=encoder).metrics
    (target / "eval.json").write_text(json.dumps(metrics))
    return target


@pytest.mark.slow
def test_the_gate_compares_only_numbers_measured_the_same_way(
    tiny_snapshot: Path, tiny_run: Path, other_run: Path, tmp_path: Path, s3_env: S3Settings, text_encoder
) -> None:
    """A model evaluated on every holdout row is not compared with one evaluated on a sample (or by
    another judge): the current model is evaluated again the candidate's way, or the candidate is refused."""
    store = open_store("s3://registry/protocols", s3_env, create_bucket=True)
    full = EvalConfig(
        judge_epochs=1, judge_width=16, cas_rows=60, cas_epochs=1, feature_rows=40, paraphrases_per_pair=1
    )
    sample = EvalConfig(**{**full.__dict__, "holdout_rows": 20})
    champion = _measured(tiny_run, tmp_path / "champion", tiny_snapshot, full, text_encoder)
    candidate = _measured(other_run, tmp_path / "candidate", tiny_snapshot, sample, text_encoder)
    assert promote(champion, store).promoted
    assert current_model(store)["protocol"]["holdout_rows"] is None

    refused = promote(candidate, store)
    assert not refused.promoted
    version = current_model(store)["version"]
    assert refused.reasons[-1].startswith(
        f"the current model {version} was evaluated another way (holdout_rows None vs 20)"
    )

    # measured the same way already: nothing to evaluate again
    champion_eval = json.loads((champion / "eval.json").read_text())
    assert evaluate_baseline(store, champion_eval, tiny_snapshot, tmp_path / "models") is None
    evaluation = json.loads((candidate / "eval.json").read_text())
    baseline = evaluate_baseline(store, evaluation, tiny_snapshot, tmp_path / "models", encoder=text_encoder)
    assert baseline["version"] == current_model(store)["version"]
    assert baseline["protocol"] == evaluation["protocol"] and baseline["gate"] != current_model(store)["gate"]
    # a snapshot the current model cannot read (another text model): refused, never a crash
    other = tmp_path / "other-encoding"
    shutil.copytree(tiny_snapshot, other)
    Snapshot(other).write_encoding(
        {**json.loads(Snapshot(other).encode_path.read_text()), "model": "someone/else"}
    )
    unreadable = evaluate_baseline(store, evaluation, other, tmp_path / "models", encoder=text_encoder)
    assert "encoded with someone/else" in unreadable["unmeasurable"]
    assert (
        "cannot be evaluated on this snapshot" in promote(candidate, store, baseline=unreadable).reasons[-1]
    )
    decision = promote(candidate, store, baseline=baseline)
    assert decision.reasons == gate_decision(evaluation["gate"], baseline["gate"], GateConfig())
    # a baseline for another model, or measured yet another way, is not used
    for stale in (
        {**baseline, "version": "0" * 12},
        {**baseline, "protocol": current_model(store)["protocol"]},
    ):
        assert "evaluated another way" in promote(candidate, store, baseline=stale).reasons[-1]

    # the CLI evaluates the current model on --snapshot
    cli = subprocess.run(
        [sys.executable, "-m", "productgen", "promote", str(candidate), "--store", "s3://registry/protocols",
         "--snapshot", str(tiny_snapshot), "--json"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert cli.returncode in (0, 1), cli.stderr
    assert not any("another way" in r for r in json.loads(cli.stdout.splitlines()[-1])["reasons"])


def test_promote_needs_an_evaluation_and_render_needs_a_model(tiny_run: Path, tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    with pytest.raises(ValueError, match=r"no eval\.json; run `productgen evaluate"):
        promote(tiny_run, store)
    with pytest.raises(StorageError, match="no promoted model"):
        fetch_model(store, tmp_path / "cache")


@pytest.mark.parametrize(
    "pointer",
    [
        {"version": "/any/absolute/dir", "image_size": 32, "conditioning": []},
        {"version": "../../etc", "image_size": 32, "conditioning": []},
        {"version": 12, "image_size": 32, "conditioning": []},
        ["not", "an", "object"],
    ],
)
def test_a_damaged_pointer_never_becomes_a_path(tmp_path: Path, pointer) -> None:
    """models/current is untrusted: its version is checked before it names a folder or a key."""
    store = open_store(str(tmp_path / "store"))
    store.put("models/current", json.dumps(pointer).encode())
    before = sorted(p for p in Path("/").glob("any*"))
    with pytest.raises(StorageError, match="models/current"):
        fetch_model(store, tmp_path / "cache")
    assert not (tmp_path / "cache").exists() and sorted(Path("/").glob("any*")) == before


def test_damaged_gate_numbers_in_the_pointer_refuse_until_forced(tiny_run: Path, tmp_path: Path) -> None:
    """The current model's gate numbers come from the store: text, NaN or a list are not compared."""
    store = open_store(str(tmp_path / "store"))
    run = _evaluated(tiny_run, tmp_path / "run", GATE)
    for gate in ({"fid": "1.0"}, {"fid": float("nan")}, ["fid", 1.0], {"fid": True}):
        store.put(
            "models/current",
            json.dumps({"version": "a" * 12, "image_size": 32, "conditioning": [], "gate": gate}).encode(),
        )
        refused = promote(run, store)
        assert (
            not refused.promoted
            and "gate numbers of the current model aaaaaaaaaaaa are damaged" in refused.reasons[0]
        )
    assert promote(run, store, force=True).promoted and current_model(store)["gate"] == GATE


def test_an_oversized_pointer_is_not_read(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    store.put("models/current", b" " * (2 << 20))
    with pytest.raises(StorageError, match="a registry file is a few KB"):
        current_model(store)
