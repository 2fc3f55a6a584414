"""`productgen <verb>`: parse arguments, build the config objects, call the library, report.

Environment variables are read here and only here. Errors the user can act on print one line
(`error: ...`) and exit 2; no traceback reaches the user for bad input (PRODUCTGEN_DEBUG=1 shows it).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

from productgen.catalog.fashion_mnist import ENV_VAR, FashionMNISTSource, FashionMNISTUnavailable
from productgen.storage import S3Settings, StorageError

if TYPE_CHECKING:  # torch comes with it: imported only by the commands that need it
    from productgen.registry import GateConfig

app = typer.Typer(
    name="productgen",
    help="Turn an e-commerce catalog into product images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _offline_by_default() -> None:
    """The packaged text model needs no hub: never reach for one unless the user says so."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


P = ParamSpec("P")
R = TypeVar("R")


class UserError(Exception):
    """Bad input the user can fix; printed as one line."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
    FashionMNISTUnavailable,
    StorageError,
    ValueError,
    OSError,
)


def _one_line_errors(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            if os.environ.get("PRODUCTGEN_DEBUG"):
                raise
            message = " ".join(str(e).split())
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def s3_settings() -> S3Settings:
    """S3 settings from the standard AWS environment (AWS_ENDPOINT_URL for MinIO or a local server)."""
    return S3Settings.from_env(os.environ)


MODEL_CACHE = Path.home() / ".cache" / "productgen" / "models"


def name_values(items: list[str] | None, option: str) -> dict[str, str]:
    """`--option name=value` items -> {name: value}; a clear error for an item without '='."""
    pairs: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"{option} {item!r}: write it as name=value")
        pairs[name.strip()] = value.strip()
    return pairs


def gate_config(overrides: list[str] | None) -> GateConfig:
    """GateConfig from --gate name=value items (tolerance, fid_tolerance, min.METRIC)."""
    from productgen.registry import GateConfig

    fields: dict[str, object] = {"minimum": {}}
    for key, value in name_values(overrides, "--gate").items():
        try:
            number = float(value)
        except ValueError:
            raise UserError(f"--gate {key}={value!r}: the value must be a number") from None
        if key.startswith("min."):
            fields["minimum"][key.removeprefix("min.")] = number
        elif key in {"tolerance", "fid_tolerance"}:
            fields[key] = number
        else:
            raise UserError(f"--gate {key!r}: use tolerance, fid_tolerance or min.METRIC")
    return GateConfig(**fields)


def _report(summary: dict[str, object], as_json: bool, title: str) -> None:
    """Print a summary as aligned lines, or as one JSON line (the last line of stdout) for scripts."""
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
        return
    typer.echo(title)
    for key, value in summary.items():
        typer.echo(f"  {key:<16} {value}")


@app.command("fashion-mnist")
@_one_line_errors
def fashion_mnist_cmd(
    data_dir: Annotated[
        Path | None, typer.Option(help=f"Folder with the IDX files (else ${ENV_VAR}).")
    ] = None,
) -> None:
    """Find (or download) and verify Fashion-MNIST; print its folder."""
    from productgen.catalog.fashion_mnist import locate_fashion_mnist

    typer.echo(locate_fashion_mnist(FashionMNISTSource.from_env(os.environ, data_dir)))


@app.command("demo-catalog")
@_one_line_errors
def demo_catalog_cmd(
    out: Annotated[Path, typer.Option(help="Folder to write catalog.parquet, catalog.csv, images/.")],
    limit: Annotated[int | None, typer.Option(help="Stratified subset of this many rows.")] = None,
    size: Annotated[int, typer.Option(help="Photo size in pixels (square).")] = 32,
    seed: Annotated[int, typer.Option(help="Seed for brands, colours, sizes and titles.")] = 0,
    data_dir: Annotated[Path | None, typer.Option(help=f"Fashion-MNIST folder (else ${ENV_VAR}).")] = None,
) -> None:
    """Build the demo catalog from Fashion-MNIST's real product photos."""
    from productgen.catalog.demo import build_demo_catalog
    from productgen.catalog.fashion_mnist import load_fashion_mnist

    started = time.perf_counter()
    data = load_fashion_mnist(FashionMNISTSource.from_env(os.environ, data_dir))
    built = build_demo_catalog(data, out, limit=limit, size=size, seed=seed)
    seconds = time.perf_counter() - started
    typer.echo(f"demo catalog: {built.rows} SKUs in {seconds:.1f}s")
    typer.echo(f"  {built.catalog_parquet}")
    typer.echo(f"  {built.catalog_csv}")
    typer.echo(f"  {built.directory / 'images'}/")


@app.command("ingest")
@_one_line_errors
def ingest_cmd(
    source: Annotated[
        str, typer.Argument(help="Catalog file (.csv, .csv.gz, .jsonl, .parquet) or s3://bucket/key.")
    ],
    out: Annotated[Path, typer.Option(help="Snapshot folder: valid rows, rejects with reasons, summary.")],
    attribute_map: Annotated[
        Path | None,
        typer.Option(
            "--map",
            help="Pinned colour/category mappings, YAML or CSV (default: attribute-map.yaml by the catalog).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON line.")] = False,
) -> None:
    """Validate a catalog into a snapshot; bad rows go to rejects with reasons."""
    from productgen.catalog.ingest import ingest_source
    from productgen.snapshot import Snapshot

    summary = ingest_source(source, out, s3=s3_settings(), attribute_map=attribute_map)
    _report(summary.to_json(), as_json, f"ingested {source}")
    if not as_json and summary.rejected:
        typer.echo(f"  rejects: {Snapshot(out).rejects_csv}")


@app.command("encode")
@_one_line_errors
def encode_cmd(
    snapshot: Annotated[Path, typer.Argument(help="Snapshot folder written by `productgen ingest`.")],
    cache: Annotated[Path | None, typer.Option(help="Embedding cache folder.")] = None,
    model: Annotated[str, typer.Option(help="sentence-transformers model id or folder.")] = "",
    batch_size: Annotated[int, typer.Option(help="Sentences per model batch.")] = 64,
    amp: Annotated[
        str,
        typer.Option(
            help="bf16 autocast for the text model: off, auto (where the CPU or GPU computes bf16 "
            "natively; 1.66x faster on a 2-core CPU with AVX512-BF16) or on. An embedding then "
            "moves with its batch mates by up to 1e-3."
        ),
    ] = "off",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON line.")] = False,
) -> None:
    """Encode every description of a snapshot; only new or changed ones reach the model."""
    from productgen.attributes import SOURCES, tally_lines
    from productgen.devices import AMP_WORDS
    from productgen.text import DEFAULT_MODEL, EncodeConfig, encode_snapshot

    if amp not in AMP_WORDS:
        raise ValueError(f"--amp must be one of {', '.join(AMP_WORDS)}, got {amp!r}")
    cache_dir = cache or Path.home() / ".cache" / "productgen" / "embeddings"
    config = EncodeConfig(model=model or DEFAULT_MODEL, batch_size=batch_size, amp=AMP_WORDS[amp])
    summary = encode_snapshot(snapshot, cache_dir, config)
    content = summary.to_json()
    if as_json:
        _report(content, as_json, "")
        return
    _report({k: v for k, v in content.items() if k != "reads"}, as_json, f"encoded {snapshot}")
    typer.echo(f"read from the rows (rows per source: {', '.join(SOURCES)})")
    for line in tally_lines(summary.reads):
        typer.echo(f"  {line}")


@app.command("train")
@_one_line_errors
def train_cmd(
    snapshot: Annotated[Path, typer.Argument(help="Snapshot folder (ingested and encoded).")],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints, samples, run.json.")],
    preset: Annotated[
        str, typer.Option(help="cpu-demo (10 minutes), cpu-quality (30 minutes) or gpu.")
    ] = "cpu-demo",
    model: Annotated[
        str | None, typer.Option(help="Model family: cgan, cvae, vaegan, stylegan or dcgan.")
    ] = None,
    loss: Annotated[
        str | None, typer.Option(help="Adversarial loss: hinge, nonsaturating or wgan-gp.")
    ] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Stop after this many minutes.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --out from its latest checkpoint.")
    ] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a setting: --set batch_size=128 (JSON values)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON line.")] = False,
) -> None:
    """Train a text-conditioned generator on a snapshot's photos.

    Under torchrun (`torchrun --standalone --nproc-per-node N -m productgen train ...`) the N
    processes train together: each on its own slice of the photos, gradients averaged every step,
    rank 0 writing the run folder.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from productgen import distributed
    from productgen.train import train, train_config

    distributed.start(os.environ)
    group = distributed.current()
    quiet = as_json or (group is not None and not group.leader)

    overrides: dict[str, object] = {
        "family": model, "loss": loss, "max_minutes": max_minutes, "max_steps": max_steps,
    }  # fmt: skip
    for key, value in name_values(set_, "--set").items():
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    config = train_config(preset, **overrides)
    if max_steps is not None and max_minutes is None:
        config = dataclasses.replace(config, max_minutes=None)  # steps alone decide

    columns = (
        TextColumn("step {task.completed:.0f}"),
        BarColumn(),
        TextColumn("{task.fields[rate]:>6.0f} img/s  {task.fields[losses]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=quiet, transient=False) as bar:
        task = bar.add_task("train", total=None, rate=0.0, losses="")

        def on_progress(p) -> None:  # rich shows the ETA from steps or the time budget
            total = p.max_steps if p.max_steps else None
            if total is None and p.max_seconds:
                total = p.step * p.max_seconds / max(p.elapsed_s, 1e-9)
            bar.update(task, completed=p.step, total=total, rate=p.images_per_s, losses=p.losses_text())

        try:
            result = train(snapshot, out, config, resume=resume, on_progress=on_progress)
        except BaseException:
            distributed.stop(together=False)
            raise
        distributed.stop()
    if group is not None and not group.leader:
        return  # rank 0 reports the run
    summary = {
        "run": str(result.run_dir), "step": result.step, "seconds": round(result.seconds, 1),
        "images_per_s": round(result.images_per_s, 1), "metrics": result.metrics,
        "sample_sheet": str(result.sample_sheet), "skipped_photos": result.skipped_photos,
    }  # fmt: skip
    _report(summary, as_json, f"trained {out}")
    if result.skipped_photos and not as_json:
        from productgen.snapshot import Snapshot

        typer.echo(f"  photos left out: {result.skipped_photos} ({Snapshot(snapshot).photo_rejects})")


@app.command("sample")
@_one_line_errors
def sample_cmd(
    run: Annotated[Path, typer.Argument(help="Run folder written by `productgen train`.")],
    text: Annotated[list[str], typer.Option(help="Description to render; repeat for several.")],
    n: Annotated[int, typer.Option("-n", help="Images per description.")] = 8,
    out: Annotated[Path, typer.Option(help="PNG sheet to write.")] = Path("sheet.png"),
    seed: Annotated[int, typer.Option(help="Noise seed.")] = 0,
    truncation: Annotated[
        float, typer.Option(help="psi from 0 to 1: below 1 trades variety for typical images.")
    ] = 1.0,
) -> None:
    """Render free-text descriptions with a trained model into a labelled sheet."""
    from productgen.attributes import describe_read
    from productgen.render import RenderPipeline, sample_sheet

    pipeline = RenderPipeline.from_run(run)
    read = sample_sheet(pipeline, text, n=n, out=out, seed=seed, title=run.name, truncation=truncation)
    for prompt, what in zip(text, read, strict=True):
        typer.echo(f"{prompt!r}: {describe_read(what)}")
    typer.echo(f"sheet: {out}")


@app.command("render")
@_one_line_errors
def render_cmd(
    snapshot: Annotated[Path, typer.Argument(help="Snapshot folder (ingested and encoded).")],
    dest: Annotated[str, typer.Option(help="s3://bucket/prefix or file:///folder (or a folder path).")],
    model: Annotated[
        Path | None, typer.Option(help="Run folder to render with; default: the store's promoted model.")
    ] = None,
    only_missing: Annotated[bool, typer.Option(help="Only rows without a catalog image.")] = False,
    variants: Annotated[int, typer.Option(help="Images per SKU, each from its own seed.")] = 1,
    image_format: Annotated[str, typer.Option("--format", help="png or webp.")] = "png",
    size: Annotated[int | None, typer.Option(help="Output size in pixels (Lanczos upscaling).")] = None,
    truncation: Annotated[
        float, typer.Option(help="psi from 0 to 1: below 1 trades variety for typical images.")
    ] = 1.0,
    create_bucket: Annotated[bool, typer.Option(help="Create the S3 bucket if it is missing.")] = False,
    workers: Annotated[int, typer.Option(help="Parallel encode + upload threads.")] = 16,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON line.")] = False,
) -> None:
    """Render one image per SKU and publish it with a manifest; unchanged SKUs are skipped."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from productgen.publish import PublishConfig, publish
    from productgen.registry import fetch_model
    from productgen.render import RenderConfig, RenderPipeline
    from productgen.snapshot import Snapshot
    from productgen.storage import open_store

    config = PublishConfig(
        render=RenderConfig(variants=variants, image_format=image_format, size=size, truncation=truncation),
        only_missing=only_missing,
        upload_workers=workers,
    )
    settings = dataclasses.replace(
        s3_settings(), max_pool_connections=max(32, workers)
    )  # a socket per thread
    store = open_store(dest, settings, create_bucket=create_bucket)
    pipeline = RenderPipeline.from_run(model or fetch_model(store, MODEL_CACHE))
    columns = (TextColumn("render"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=as_json) as bar:
        task = bar.add_task("render", total=None)
        summary = publish(
            snapshot, pipeline, store, config,
            on_progress=lambda p: bar.update(task, completed=p.done, total=p.total),
        )  # fmt: skip
    _report(summary.to_json(), as_json, f"published to {summary.dest}")
    if summary.low_confidence and not as_json:
        typer.echo(
            f"  note: {summary.low_confidence:,} rows were rendered from a colour or category read with low "
            f"confidence; see {Snapshot(snapshot).reads_path}, or pin them in attribute-map.yaml"
        )


@app.command("variants")
@_one_line_errors
def variants_cmd(
    snapshot: Annotated[
        Path, typer.Argument(help="Snapshot folder (ingested and encoded), rows with photos.")
    ],
    dest: Annotated[str, typer.Option(help="s3://bucket/prefix or file:///folder (or a folder path).")],
    colors: Annotated[
        str | None,
        typer.Option(help="Colours for rows without a variant_colors column: 'navy,olive,#7b1f3a'."),
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Run folder (cvae or vaegan); default: the store's promoted model.")
    ] = None,
    method: Annotated[
        str, typer.Option(help="shading (the photo's own shading kept) or decoder.")
    ] = "shading",
    image_format: Annotated[str, typer.Option("--format", help="png or webp.")] = "png",
    size: Annotated[int | None, typer.Option(help="Output size in pixels; default: the model's.")] = None,
    sheet: Annotated[
        Path | None,
        typer.Option(help="Also write the run's contact sheet here (each photo, then its variants)."),
    ] = None,
    rejects: Annotated[Path | None, typer.Option(help="Write the rows left out here (CSV).")] = None,
    create_bucket: Annotated[bool, typer.Option(help="Create the S3 bucket if it is missing.")] = False,
    workers: Annotated[int, typer.Option(help="Parallel encode + upload threads.")] = 16,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON line.")] = False,
) -> None:
    """Publish each photo's item in other colours as MODEL/SKU-COLOUR.png; unchanged ones are skipped."""
    from productgen.publish import PublishConfig
    from productgen.registry import fetch_model
    from productgen.render import RenderConfig
    from productgen.runs import load_generator
    from productgen.snapshot import escape_formula
    from productgen.storage import open_store
    from productgen.variants import VariantMaker, parse_colours, publish_variants

    colours = parse_colours(colors)
    config = PublishConfig(render=RenderConfig(image_format=image_format, size=size), upload_workers=workers)
    settings = dataclasses.replace(s3_settings(), max_pool_connections=max(32, workers))
    store = open_store(dest, settings, create_bucket=create_bucket)
    maker = VariantMaker(load_generator(model or fetch_model(store, MODEL_CACHE)), method)
    summary = publish_variants(snapshot, maker, store, config, colours=colours)
    _report(summary.to_json(), as_json, f"published variants to {summary.publish.dest}")
    if len(summary.rejects):
        if rejects is not None:
            summary.rejects.map(escape_formula).to_csv(rejects, index=False)
        if not as_json:
            first = summary.rejects.iloc[0]
            where = f"; all in {rejects}" if rejects else "; --rejects FILE writes them all"
            example = f"{first['sku']}: {first['reason']}"
            typer.echo(f"  left out {len(summary.rejects):,} (row, colour): e.g. {example}{where}")
    if sheet is not None and summary.sheet_png is not None:
        sheet.write_bytes(summary.sheet_png)
        if not as_json:
            typer.echo(f"  sheet written to {sheet}")


dev_app = typer.Typer(help="Local development services.", no_args_is_help=True)
app.add_typer(dev_app, name="dev")


@dev_app.command("s3")
@_one_line_errors
def dev_s3_cmd(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 9000,
    bucket: Annotated[list[str] | None, typer.Option(help="Bucket to create; repeat for several.")] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="Folder that holds the buckets (kept across restarts); default: a temporary one."),
    ] = None,
) -> None:
    """Run a local disk-backed S3-compatible server until Ctrl-C or SIGTERM; print the variables to export."""
    import signal
    import tempfile

    from productgen.devs3 import DEV_CREDENTIALS
    from productgen.disks3 import DiskS3
    from productgen.storage import S3Settings, open_store

    scratch = None if data else tempfile.TemporaryDirectory(prefix="productgen-s3-")
    folder = data or Path(scratch.name)
    server = DiskS3(folder, port=port).start()
    env = {"AWS_ENDPOINT_URL": server.url, **DEV_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(env)  # this process creates the buckets with the same credentials
    for name in bucket or []:
        open_store(f"s3://{name}", S3Settings(endpoint_url=server.url), create_bucket=True)
    where = f"in {folder}, written before each write is acknowledged" if data else "in a temporary folder"
    typer.echo(f"local S3 server on {server.url} ({server.objects:,} objects {where}); in another shell:")
    for key, value in env.items():
        typer.echo(f"  export {key}={value}")

    def stop_on_sigterm(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
        if scratch:
            scratch.cleanup()


@app.command("evaluate")
@_one_line_errors
def evaluate_cmd(
    run: Annotated[Path, typer.Argument(help="Run folder written by `productgen train`.")],
    snapshot: Annotated[Path, typer.Argument(help="Snapshot with the real photos (train + holdout).")],
    holdout_rows: Annotated[
        int | None, typer.Option(help="Render a sample of this many holdout rows (stratified).")
    ] = None,
    judge_epochs: Annotated[int, typer.Option(help="Epochs for the judge (cached per snapshot).")] = 12,
    quick: Annotated[
        bool, typer.Option(help="The demo's evaluation: 2,000 holdout rows, a narrower judge (< 2 min).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the gate numbers as one JSON line.")] = False,
) -> None:
    """Measure how well renders match their descriptions; write eval.json, eval.md, contact sheet."""
    from productgen.evaluate import EVALUATIONS, evaluate_run
    from productgen.report import write_report

    config = dataclasses.replace(EVALUATIONS["quick" if quick else "full"], judge_epochs=judge_epochs)
    if holdout_rows is not None:
        config = dataclasses.replace(config, holdout_rows=holdout_rows)
    evaluation = evaluate_run(
        run, snapshot, config, on_progress=lambda line: typer.echo(f"  {line}", err=True)
    )
    paths = write_report(evaluation, run)
    summary = {**evaluation.metrics["gate"], **{k: str(v) for k, v in paths.items()}}
    _report(summary, as_json, f"evaluated {run} (model {evaluation.metrics['model_version']})")


@app.command("promote")
@_one_line_errors
def promote_cmd(
    run: Annotated[Path, typer.Argument(help="Evaluated run folder.")],
    store: Annotated[str, typer.Option(help="Registry store: s3://bucket/prefix or a folder.")],
    force: Annotated[bool, typer.Option(help="Promote even if the gate refuses (logged).")] = False,
    gate: Annotated[
        list[str] | None,
        typer.Option(help="Gate setting: tolerance=0.01, fid_tolerance=0.05, min.METRIC=0.9."),
    ] = None,
    snapshot: Annotated[
        Path | None,
        typer.Option(help="Where the current model was evaluated another way: evaluate it on this snapshot."),
    ] = None,
    create_bucket: Annotated[bool, typer.Option(help="Create the S3 bucket if it is missing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as one JSON line.")] = False,
) -> None:
    """Make a run the model renders use, if its evaluation is at least as good as the current one's
    (measured the same way: with --snapshot, the current model is evaluated again when it was not)."""
    from productgen.evaluate import evaluate_baseline
    from productgen.registry import promote
    from productgen.runs import RunFolder
    from productgen.storage import open_store

    registry = open_store(store, s3_settings(), create_bucket=create_bucket)
    baseline = None
    if snapshot is not None:
        baseline = evaluate_baseline(
            registry, RunFolder(run).read_evaluation(), snapshot, MODEL_CACHE,
            on_progress=lambda line: typer.echo(f"  current model: {line}", err=True),
        )  # fmt: skip
    decision = promote(run, registry, gate_config(gate), force=force, baseline=baseline)
    _report(decision.to_json(), as_json, "promoted" if decision.promoted else "refused by the gate")
    if not decision.promoted:
        raise typer.Exit(1)
