"""Tasks: one productgen function each. I/O tasks retry with backoff; deterministic compute never.

Tasks hand each other folders and URIs (snapshot, run, store), never data or models. Ingest and
encode are cached by the content they read, with results persisted as JSON, so a nightly run over
an unchanged catalog shows them as Cached and does no work.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import time
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_image_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import INPUTS
from prefect.tasks import exponential_backoff

from productgen import distributed
from productgen.catalog.ingest import ingest_source, source_fingerprint
from productgen.devices import AMP_WORDS
from productgen.evaluate import EVALUATIONS, evaluate_baseline, evaluate_run
from productgen.publish import PublishConfig, PublishSummary, finish_publish, publish
from productgen.registry import (
    GateConfig,
    current_model,
    fetch_model,
    promote,
    promoted_report,
    retrain_reason,
)
from productgen.render import RenderConfig, RenderPipeline
from productgen.report import write_report
from productgen.runs import load_generator
from productgen.shards import Shard
from productgen.snapshot import Snapshot
from productgen.storage import S3Settings, StorageError, open_store
from productgen.text import DEFAULT_MODEL, EncodeConfig, encode_snapshot
from productgen.train import train, train_config
from productgen.variants import VariantMaker, parse_colours, publish_variants


def _transient(task, task_run, state) -> bool:
    """Retry storage trouble that may pass (unreachable, throttled); never bad input or a bad bucket."""
    try:
        state.result()
    except StorageError as e:
        return e.transient
    except OSError:
        return True
    except Exception:
        return False
    return False


IO_RETRIES = {
    "retry_condition_fn": _transient,
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=5),
    "retry_jitter_factor": 0.5,
}
CACHED = {"persist_result": True, "result_serializer": "json"}
# what a failed rank said: its one-line error or exception, else torchrun's exit code or signal
_RANK_ERROR = re.compile(
    r"^(\[rank\d+\]: )?(error: |\w+(Error|Exception): )|^\s*(exitcode|error_file|Signal)\b"
)


def s3() -> S3Settings:
    """S3 settings from the worker's AWS_* environment (flows are the edge that reads it)."""
    return S3Settings.from_env(os.environ)


@task(**IO_RETRIES)
def fingerprint_catalog(catalog: str) -> str:
    """SHA-256 of a local catalog file, ETag and size of an S3 one."""
    return source_fingerprint(catalog, s3=s3())


@task(cache_policy=INPUTS, **IO_RETRIES, **CACHED)
def ingest_catalog(catalog: str, fingerprint: str, snapshot: str) -> dict:
    """Catalog -> snapshot folder; cached by the catalog's content fingerprint and the folder."""
    return ingest_source(catalog, Path(snapshot), s3=s3()).to_json()


@task(cache_policy=INPUTS, **CACHED)
def encode_descriptions(snapshot: str, cache_dir: str, model: str = DEFAULT_MODEL, amp: str = "off") -> dict:
    """Embeddings for every description; only new or changed texts reach the model.

    Cached by the snapshot folder, which is named by its catalog's content fingerprint.
    amp: bf16 for the text model (productgen.devices.AMP_WORDS).
    """
    config = EncodeConfig(model=model, amp=AMP_WORDS[amp])
    return encode_snapshot(Path(snapshot), Path(cache_dir), config).to_json()


@task(**IO_RETRIES)
def decide_retrain(mode: str, dest: str, snapshot: str, create_bucket: bool = True) -> str | None:
    """Why to train a new model (None: render with the promoted one)."""
    return retrain_reason(mode, open_store(dest, s3(), create_bucket=create_bucket), Path(snapshot))


@task
def train_model(
    snapshot: str, run_dir: str, preset: str, max_minutes: float | None, processes: int = 1
) -> str:
    """A new run folder with the trained EMA generator; progress goes to the run's logs.

    processes > 1: `productgen train` under torchrun, that many data-parallel processes.
    """
    logger, last = get_run_logger(), [0.0]
    if processes > 1:
        cli = ["train", snapshot, "--out", run_dir, "--preset", preset]
        cli += ["--max-minutes", str(max_minutes)] if max_minutes is not None else []
        logger.info(f"training with {processes} processes (torchrun)")
        done = subprocess.run(
            distributed.torchrun_command(processes, [*cli, "--json"]), capture_output=True, text=True
        )
        if done.returncode:
            said = [line.strip() for line in done.stderr.splitlines() if _RANK_ERROR.match(line)]
            why = "; ".join(said[:3]) or done.stderr.strip()[-500:] or "no output"
            raise RuntimeError(f"distributed training ({processes} processes) failed: {why}")
        logger.info(done.stdout.strip().splitlines()[-1])
        return run_dir

    def on_progress(p) -> None:
        if time.monotonic() - last[0] >= 30:
            last[0] = time.monotonic()
            logger.info(f"step {p.step}: {p.images_per_s:.0f} img/s, {p.losses_text(', ')}")

    result = train(
        Path(snapshot), Path(run_dir), train_config(preset, max_minutes=max_minutes), on_progress=on_progress
    )
    return str(result.run_dir)


@task
def evaluate_model(run_dir: str, snapshot: str, judge_epochs: int, evaluation: str = "full") -> dict:
    """eval.json, eval.md and the contact sheet in the run folder; returns the metrics."""
    logger = get_run_logger()
    config = dataclasses.replace(EVALUATIONS[evaluation], judge_epochs=judge_epochs)
    evaluation = evaluate_run(Path(run_dir), Path(snapshot), config, on_progress=logger.info)
    write_report(evaluation, Path(run_dir))
    return evaluation.metrics


@task(**IO_RETRIES)  # it fetches the promoted model from the store
def evaluate_promoted(dest: str, candidate: dict, snapshot: str, model_cache: str) -> dict | None:
    """The promoted model evaluated the candidate's way, when its own numbers were measured another way."""
    logger = get_run_logger()

    def say(line: str) -> None:
        logger.info(f"promoted model: {line}")

    baseline = evaluate_baseline(
        open_store(dest, s3()), candidate, Path(snapshot), Path(model_cache), on_progress=say
    )
    if baseline is not None:
        logger.info(
            f"the gate compares with model {baseline['version']} evaluated this way: {baseline['gate']}"
        )
    return baseline


@task(**IO_RETRIES)
def promote_model(
    run_dir: str, dest: str, force: bool = False, minimum: dict | None = None, baseline: dict | None = None
) -> dict:
    """Promote the run if the gate allows (or force, logged in models/history.jsonl)."""
    gate = GateConfig(minimum=minimum or {})
    return promote(Path(run_dir), open_store(dest, s3()), gate, force=force, baseline=baseline).to_json()


@task
def encode_shard(
    snapshot: str, cache_dir: str, index: int, count: int, model: str = DEFAULT_MODEL, amp: str = "off"
) -> dict:
    """One shard's descriptions into the embedding cache (the text model's work, fanned out)."""
    config = EncodeConfig(model=model, amp=AMP_WORDS[amp])
    return encode_snapshot(Path(snapshot), Path(cache_dir), config, shard=Shard(index, count)).to_json()


@task(**IO_RETRIES)
def promoted_version(dest: str) -> str:
    """The promoted model's version, read once so every shard renders with the same model."""
    current = current_model(open_store(dest, s3()))
    if current is None:
        raise StorageError(f"{dest}: no promoted model (models/current); train and promote one")
    return current["version"]


@task(**IO_RETRIES, task_run_name="publish-shard-{index}-of-{count}")  # exactly once: safe to retry
def publish_shard(
    snapshot: str, dest: str, model_cache: str, version: str, run_id: str, index: int, count: int,
    render: dict, only_missing: bool = False,
) -> dict:  # fmt: skip
    """Render and publish one shard's SKUs as part of run `run_id`; the model comes from the store."""
    store = open_store(dest, s3())
    pipeline = RenderPipeline.from_run(fetch_model(store, Path(model_cache), version))
    config = PublishConfig(render=RenderConfig(**render), only_missing=only_missing)
    summary = publish(Path(snapshot), pipeline, store, config, shard=Shard(index, count), run_id=run_id)
    get_run_logger().info(
        f"shard {index + 1}/{count}: {summary.published} published, {summary.unchanged} unchanged"
    )
    return summary.to_json()


@task(**IO_RETRIES)
def finish_render(dest: str, shards: list[dict], seconds: float) -> dict:
    """The run's manifest from every shard's parts."""
    summaries = [PublishSummary.from_json(s) for s in shards]
    return finish_publish(open_store(dest, s3()), summaries, seconds).to_json()


@task(**IO_RETRIES)  # safe to retry: publishing is incremental and exactly once
def publish_images(
    snapshot: str,
    dest: str,
    model_cache: str,
    *,
    only_missing: bool = False,
    variants: int = 1,
    image_format: str = "png",
    size: int | None = None,
    truncation: float = 1.0,
) -> dict:
    """Render with the promoted model and publish; a progress artifact follows the uploads."""
    store = open_store(dest, s3())
    pipeline = RenderPipeline.from_run(fetch_model(store, Path(model_cache)))
    render = RenderConfig(variants=variants, image_format=image_format, size=size, truncation=truncation)
    config = PublishConfig(render=render, only_missing=only_missing)
    progress = create_progress_artifact(0.0, key="render-progress", description=f"Publishing to {dest}")
    last = [0.0]

    def on_progress(p) -> None:
        if time.monotonic() - last[0] >= 2 or p.done == p.total:
            last[0] = time.monotonic()
            update_progress_artifact(progress, 100.0 * p.done / max(p.total, 1))

    summary = publish(Path(snapshot), pipeline, store, config, on_progress=on_progress)
    update_progress_artifact(progress, 100.0)
    return summary.to_json()


@task(**IO_RETRIES)  # safe to retry: variants are published exactly once too
def publish_photo_variants(
    snapshot: str,
    dest: str,
    model_cache: str,
    colours: str,
    image_format: str = "png",
    size: int | None = None,
) -> dict:
    """Colour variants of the rows' photos with the promoted model; the run's contact sheet as an artifact."""
    store = open_store(dest, s3())
    maker = VariantMaker(load_generator(fetch_model(store, Path(model_cache))))
    config = PublishConfig(render=RenderConfig(image_format=image_format, size=size))
    summary = publish_variants(Path(snapshot), maker, store, config, colours=parse_colours(colours))
    if summary.sheet:
        create_image_artifact(summary.sheet, key="variants-sheet", description="photo | its colour variants")
    if len(summary.rejects):
        get_run_logger().warning(
            f"{len(summary.rejects):,} rows or colours left out of the variants, e.g. "
            f"{summary.rejects['sku'].iloc[0]}: {summary.rejects['reason'].iloc[0]}"
        )
    return {**summary.to_json(), "rejects": summary.rejects.head(20).to_dict("records")}


@task(**IO_RETRIES)
def registry_report(dest: str) -> dict:
    """The promoted model's pointer, evaluation and contact-sheet link (presigned for S3)."""
    report = promoted_report(open_store(dest, s3()))
    return {"current": report.current, "metrics": report.metrics, "contact_sheet": report.contact_sheet}


@task
def first_rejects(snapshot: str, limit: int = 20) -> list[dict]:
    """The snapshot's first rejected rows with their reasons, for the run's summary."""
    return Snapshot(Path(snapshot)).read_rejects(limit).to_dict("records")
