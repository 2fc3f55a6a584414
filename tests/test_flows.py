"""Prefect flows: the nightly pipeline end to end against the S3 server, incremental, scheduled."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from prefect.client.orchestration import get_client
from prefect.testing.utilities import prefect_test_harness

from flows.params import NightlyParams
from flows.pipeline import nightly
from flows.serve import NIGHTLY, ServeSettings, deployments
from productgen.snapshot import Snapshot
from productgen.storage import S3Settings, open_store

pytestmark = pytest.mark.slow  # a Prefect server per module: minutes, not seconds


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def _artifacts(*keys: str) -> dict[str, object]:
    """The newest artifact of each key."""
    from prefect.artifacts import Artifact

    return {key: Artifact.get(key) for key in keys}


def _latest_task_states() -> dict[str, str]:
    """Task name -> state name of its newest run."""
    import asyncio

    from prefect.client.schemas.sorting import TaskRunSort

    async def read() -> dict[str, str]:
        async with get_client() as client:
            runs = await client.read_task_runs(sort=TaskRunSort.EXPECTED_START_TIME_DESC, limit=200)
        newest: dict[str, str] = {}
        for run in runs:
            newest.setdefault(run.name.rsplit("-", 1)[0], run.state.name)
        return newest

    return asyncio.run(read())


def test_nightly_publishes_then_is_incremental(
    harness, small_demo, s3_env: S3Settings, tmp_path: Path
) -> None:
    params = NightlyParams(
        catalog=str(small_demo.catalog_parquet), dest="s3://nightly/catalog", workdir=str(tmp_path / "work"),
        max_minutes=0.05, judge_epochs=2,
    )  # fmt: skip
    state = nightly(params, return_state=True)
    assert state.is_completed(), state
    first = state.result()
    assert first["promotion"]["promoted"] and first["published"]["published"] == 700

    store = open_store("s3://nightly/catalog", s3_env)
    version = first["model"]["version"]
    images = {o.key for o in store.list(f"{version}/")}
    assert len(images) == 700
    latest = json.loads(store.get("manifests/latest"))
    manifest = pq.read_table(io.BytesIO(store.get(latest["manifest"]))).to_pandas()
    assert set(manifest["key"]) == images and manifest["sku"].is_unique
    assert store.head(f"models/{version}/contact-sheet.png") is not None

    artifacts = _artifacts("nightly-summary", "contact-sheet", "render-progress", "evaluation")
    assert all(artifacts.values()), artifacts
    summary = artifacts["nightly-summary"].data
    assert "700 valid rows" in summary and "700 published" in summary and version in summary
    assert "## What was read from the rows" in summary and "| field | 700 | 700 |" in summary
    assert artifacts["contact-sheet"].type == "image" and "Signature=" in artifacts["contact-sheet"].data
    assert artifacts["render-progress"].data == 100.0

    # second run, nothing changed: ingest and encode come from the cache, no training, nothing published
    again = nightly(params, return_state=True)
    assert again.is_completed()
    second = again.result()
    assert second["promotion"] is None and second["model"]["version"] == version
    assert (second["published"]["published"], second["published"]["unchanged"]) == (0, 700)
    states = _latest_task_states()
    assert states["ingest_catalog"] == "Cached" and states["encode_descriptions"] == "Cached"

    # the same catalog with photo variants asked: each row's photo in navy, beside its render
    with_variants = params.model_copy(update={"photo_variants": True, "variant_colors": "navy"})
    third = nightly(with_variants, return_state=True).result()
    variants = third["published"]["photo_variants"]
    assert (variants["published"], variants["rejected"], third["published"]["published"]) == (700, 0, 0)
    assert store.head(f"{version}/{manifest['sku'].iloc[0]}-navy.png") is not None
    sheet = _artifacts("variants-sheet")["variants-sheet"]
    assert sheet.type == "image" and "variants-sheet.png" in sheet.data


def test_nothing_is_published_when_the_gate_refuses(
    harness, small_demo, s3_env: S3Settings, tmp_path: Path
) -> None:
    params = NightlyParams(
        catalog=str(small_demo.catalog_parquet), dest="s3://refused/catalog", workdir=str(tmp_path / "work"),
        max_minutes=0.05, judge_epochs=2, gate_minimum={"color_accuracy": 1.01}, encode_amp="on",
    )  # fmt: skip
    result = nightly(params)
    assert result["published"] is None and not result["promotion"]["promoted"]
    assert json.loads(Snapshot(Path(result["snapshot"])).encode_path.read_text())["bf16"] is True
    assert "color_accuracy" in result["promotion"]["reasons"][0]
    store = open_store("s3://refused/catalog", s3_env)
    assert [o.key for o in store.list()] == ["models/history.jsonl"]  # the refusal, logged; no image
    from prefect.artifacts import Artifact

    assert "REFUSED by the gate" in Artifact.get("nightly-summary").data


def test_nightly_deployment_is_scheduled_and_serialised() -> None:
    served = {d.name: d for d in deployments(ServeSettings(timezone="Europe/Berlin", dest="s3://b/p"))}
    nightly_deployment = served[NIGHTLY]
    (schedule,) = nightly_deployment.schedules
    assert schedule.schedule.cron == "0 2 * * *" and schedule.schedule.timezone == "Europe/Berlin"
    assert nightly_deployment.concurrency_limit == 1
    assert nightly_deployment.parameters["params"]["dest"] == "s3://b/p"
    # the UI's form: one typed object with the pipeline's settings
    from prefect.utilities.callables import parameter_schema

    schema = json.dumps(parameter_schema(nightly).model_dump())
    assert all(
        f'"{name}"' in schema
        for name in ("catalog", "dest", "preset", "retrain", "max_minutes", "only_missing")
    )
    assert '"enum": ["auto", "always", "never"]' in schema
