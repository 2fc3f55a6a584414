"""`productgen <verb>`: parse arguments, build the config objects, call the library, report.

Environment variables are read here and only here. Errors the user can act on print one line
(`error: ...`) and exit 2; no traceback reaches the user for bad input.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from productgen.catalog.fashion_mnist import ENV_VAR, FashionMNISTSource, FashionMNISTUnavailable
from productgen.storage import S3Settings, StorageError

# The packaged text model needs no hub; never reach for one unless the user says so.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

app = typer.Typer(
    name="productgen",
    help="Turn an e-commerce catalog into product images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

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
            message = " ".join(str(e).split())
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def s3_settings() -> S3Settings:
    """S3 settings from the standard AWS environment (AWS_ENDPOINT_URL for MinIO or a local server)."""
    return S3Settings(
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None,
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    )


def _report(summary: dict[str, object], as_json: bool, title: str) -> None:
    """Print a summary as aligned lines, or as one JSON line (the last line of stdout) for scripts."""
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
        return
    typer.echo(title)
    for key, value in summary.items():
        typer.echo(f"  {key:<16} {value}")


def fashion_mnist_source(directory: Path | None = None) -> FashionMNISTSource:
    """The dataset source from an explicit folder or $PRODUCTGEN_FASHION_MNIST_DIR."""
    env = os.environ.get(ENV_VAR)
    return FashionMNISTSource(directory=directory or (Path(env) if env else None))


@app.command("fashion-mnist")
@_one_line_errors
def fashion_mnist_cmd(
    data_dir: Annotated[
        Path | None, typer.Option(help=f"Folder with the IDX files (else ${ENV_VAR}).")
    ] = None,
) -> None:
    """Find (or download) and verify Fashion-MNIST; print its folder."""
    from productgen.catalog.fashion_mnist import locate_fashion_mnist

    typer.echo(locate_fashion_mnist(fashion_mnist_source(data_dir)))


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
    data = load_fashion_mnist(fashion_mnist_source(data_dir))
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
    out: Annotated[Path, typer.Option(help="Snapshot folder: valid.parquet, rejects.*, summary.json.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON line.")] = False,
) -> None:
    """Validate a catalog into a snapshot; bad rows go to rejects with reasons."""
    from productgen.catalog.ingest import ingest_source

    summary = ingest_source(source, out, s3=s3_settings())
    _report(summary.to_json(), as_json, f"ingested {source}")
    if not as_json and summary.rejected:
        typer.echo(f"  rejects: {out / 'rejects.csv'}")


@app.command("encode")
@_one_line_errors
def encode_cmd(
    snapshot: Annotated[Path, typer.Argument(help="Snapshot folder written by `productgen ingest`.")],
    cache: Annotated[Path | None, typer.Option(help="Embedding cache folder.")] = None,
    model: Annotated[str, typer.Option(help="sentence-transformers model id or folder.")] = "",
    batch_size: Annotated[int, typer.Option(help="Sentences per model batch.")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON line.")] = False,
) -> None:
    """Encode every description of a snapshot; only new or changed ones reach the model."""
    from productgen.text import DEFAULT_MODEL, EncodeConfig, encode_snapshot

    cache_dir = cache or Path.home() / ".cache" / "productgen" / "embeddings"
    config = EncodeConfig(model=model or DEFAULT_MODEL, batch_size=batch_size)
    summary = encode_snapshot(snapshot, cache_dir, config)
    _report(summary.to_json(), as_json, f"encoded {snapshot}")
