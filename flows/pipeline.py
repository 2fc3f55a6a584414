"""The flows: one per stage, and `nightly` composing them. Each reads as its steps, nothing more."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_image_artifact, create_link_artifact, create_markdown_artifact

from flows import runners
from flows.params import NightlyParams, RenderParams
from flows.tasks import (
    decide_retrain,
    encode_descriptions,
    encode_shard,
    evaluate_model,
    evaluate_promoted,
    fingerprint_catalog,
    finish_render,
    first_rejects,
    ingest_catalog,
    promote_model,
    promoted_version,
    publish_images,
    publish_photo_variants,
    publish_shard,
    registry_report,
    train_model,
)
from productgen.manifest import new_run_id
from productgen.report import NightlyOutcome, markdown_report, nightly_summary
from productgen.snapshot import Snapshot


@flow(name="ingest")
def ingest_flow(catalog: str, workdir: str = "build/pipeline") -> dict:
    """Validate a catalog into a snapshot named by its content; bad rows go to rejects with reasons."""
    fingerprint = fingerprint_catalog(catalog)
    snapshot = Path(workdir) / "snapshots" / fingerprint[:16]
    gone = not Snapshot(snapshot).ingested  # a cached result must not outlive its folder
    summary = ingest_catalog.with_options(refresh_cache=gone)(catalog, fingerprint, str(snapshot))
    return {**summary, "snapshot": str(snapshot)}


@flow(name="encode")
def encode_flow(
    snapshot: str,
    workdir: str = "build/pipeline",
    task_runner: str = "none",
    shards: int = 0,
    amp: str = "off",
) -> dict:
    """Embed every description of a snapshot (texts already embedded come from the cache).

    With a Dask task runner, shards bring their texts into the cache on the workers first.
    amp: bf16 for the text model (productgen.devices.AMP_WORDS).
    """
    gone = not Snapshot(Path(snapshot)).encoded
    cache = str(Path(workdir) / "embedding-cache")
    if gone and (runner := runners.task_runner(task_runner)):
        count = runners.shard_count(task_runner, shards, Snapshot(Path(snapshot)).num_rows())
        encode_shards_flow.with_options(task_runner=runner)(snapshot, cache, count, amp)
    return encode_descriptions.with_options(refresh_cache=gone)(snapshot, cache, amp=amp)


@flow(name="encode-shards")
def encode_shards_flow(snapshot: str, cache: str, count: int, amp: str = "off") -> list[dict]:
    """Every shard's texts into the embedding cache, one task per shard."""
    futures = [encode_shard.submit(snapshot, cache, index, count, amp=amp) for index in range(count)]
    return [f.result() for f in futures]


@flow(name="train")
def train_flow(
    snapshot: str,
    workdir: str = "build/pipeline",
    preset: str = "cpu-demo",
    max_minutes: float | None = None,
    train_processes: int = 1,
) -> str:
    """Train a new model on a snapshot (data-parallel over train_processes) for max_minutes (None:
    the preset's budget); returns its run folder."""
    run_dir = Path(workdir) / "runs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return train_model(snapshot, str(run_dir), preset, max_minutes, train_processes)


@flow(name="evaluate-promote")
def evaluate_promote_flow(
    run_dir: str,
    snapshot: str,
    dest: str,
    judge_epochs: int = 12,
    force: bool = False,
    gate_minimum: dict[str, float] | None = None,
    evaluation: str = "full",
    workdir: str = "build/pipeline",
) -> dict:
    """Measure a run and promote it if it is at least as good as the current model (measured the
    same way: when it was evaluated another way, it is evaluated again here, on this snapshot)."""
    metrics = evaluate_model(run_dir, snapshot, judge_epochs, evaluation)
    cache = str(Path(workdir) / "models")
    baseline = evaluate_promoted(dest, metrics, snapshot, cache)
    decision = promote_model(run_dir, dest, force, gate_minimum, baseline)
    create_markdown_artifact(
        markdown_report(metrics), key="evaluation", description=f"Evaluation of {run_dir}"
    )
    return decision


@flow(name="render")
def render_flow(params: RenderParams) -> dict:
    """Render a snapshot with the promoted model and publish it, exactly once per SKU; with
    photo_variants, then each photo's item in the asked colours (productgen.variants).

    With a Dask task runner, shards render and publish on the workers and the manifest is merged here.
    """
    cache = str(Path(params.workdir) / "models")
    if runner := runners.task_runner(params.task_runner):
        rows = Snapshot(Path(params.snapshot)).num_rows()
        published = render_shards_flow.with_options(task_runner=runner)(
            params, runners.shard_count(params.task_runner, params.shards, rows)
        )
    else:
        published = publish_images(
            params.snapshot, params.dest, cache, only_missing=params.only_missing, variants=params.variants,
            image_format=params.image_format, size=params.size, truncation=params.truncation,
        )  # fmt: skip
    if params.photo_variants:
        published["photo_variants"] = publish_photo_variants(
            params.snapshot, params.dest, cache, params.variant_colors, params.image_format, params.size
        )
    return published


@flow(name="render-shards")
def render_shards_flow(params: RenderParams, count: int) -> dict:
    """One task per shard, all under one run id and one model version; then the run's manifest."""
    started = time.perf_counter()
    version, run_id = promoted_version(params.dest), new_run_id()
    render = {"variants": params.variants, "image_format": params.image_format, "size": params.size,
              "truncation": params.truncation}  # fmt: skip
    cache = str(Path(params.workdir) / "models")
    futures = [
        publish_shard.submit(
            params.snapshot, params.dest, cache, version, run_id, index, count, render, params.only_missing
        )
        for index in range(count)
    ]
    shards = [f.result() for f in futures]
    return finish_render(params.dest, shards, time.perf_counter() - started)


@flow(name="nightly", log_prints=True)
def nightly(params: NightlyParams) -> dict:
    """ingest -> encode -> (train -> evaluate -> promote, when retraining) -> render -> report."""
    logger = get_run_logger()
    ingested = ingest_flow(params.catalog, params.workdir)
    snapshot = ingested["snapshot"]
    encoded = encode_flow(snapshot, params.workdir, params.task_runner, params.shards, params.encode_amp)

    reason = decide_retrain(params.retrain, params.dest, snapshot, params.create_bucket)
    promotion = None
    if reason:
        logger.info(f"training a new model: {reason}")
        run_dir = train_flow(
            snapshot, params.workdir, params.preset, params.max_minutes, params.train_processes
        )
        promotion = evaluate_promote_flow(
            run_dir, snapshot, params.dest, params.judge_epochs, params.force_promote, params.gate_minimum,
            params.evaluation, params.workdir,
        )  # fmt: skip
        if not promotion["promoted"]:
            logger.warning(f"the gate refused model {promotion['version']}: nothing is published")
            _summary_artifact(params, ingested, encoded, reason, promotion, None, None)
            return {"snapshot": snapshot, "promotion": promotion, "published": None}
    else:
        logger.info("the promoted model was trained on this data; rendering with it")

    render = RenderParams(
        snapshot=snapshot, dest=params.dest, workdir=params.workdir, only_missing=params.only_missing,
        task_runner=params.task_runner, shards=params.shards, photo_variants=params.photo_variants,
        variant_colors=params.variant_colors,
    )  # fmt: skip
    published = render_flow(render)
    registry = registry_report(params.dest)
    _summary_artifact(params, ingested, encoded, reason, promotion, published, registry)
    return {
        "snapshot": snapshot,
        "promotion": promotion,
        "published": published,
        "model": registry["current"],
    }


def _summary_artifact(params, ingested, encoded, reason, promotion, published, registry) -> None:
    """The run's markdown summary (from the library) and the promoted model's contact sheet."""
    snapshot = ingested["snapshot"]
    outcome = NightlyOutcome(
        catalog=params.catalog, dest=params.dest, snapshot=snapshot, valid=ingested["valid"],
        rejected=ingested["rejected"],
        rejects=pd.DataFrame(first_rejects(snapshot) if ingested["rejected"] else []),
        retrain_reason=reason, promotion=promotion, published=published,
        gate=registry["metrics"]["gate"] if registry else None,
        model_version=registry["current"]["version"] if registry else None,
        contact_sheet=registry["contact_sheet"] if registry else None, reads=encoded.get("reads"),
    )  # fmt: skip
    if registry:
        create_image_artifact(
            registry["contact_sheet"], key="contact-sheet", description="real photo | render"
        )
        create_link_artifact(registry["contact_sheet"], link_text="contact sheet", key="contact-sheet-link")
    create_markdown_artifact(
        nightly_summary(outcome), key="nightly-summary", description="Nightly catalog render"
    )
