"""`productgen <verb>`: parse arguments, build the config objects, call the library, report.

Environment variables are read here and only here. Errors the user can act on print one line
(`error: ...`) and exit 2; no traceback reaches the user for bad input.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from productgen.catalog.fashion_mnist import ENV_VAR, FashionMNISTSource, FashionMNISTUnavailable

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


USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FashionMNISTUnavailable, ValueError, OSError)


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
