"""Shared fixtures: the real Fashion-MNIST files and small demo catalogs built from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from productgen.catalog import DemoCatalog, FashionMNIST, build_demo_catalog, load_fashion_mnist
from productgen.cli import fashion_mnist_source


@pytest.fixture(scope="session")
def fashion_mnist() -> FashionMNIST:
    """The real dataset, found the way the CLI finds it (`make setup` made sure it is there)."""
    return load_fashion_mnist(fashion_mnist_source())


@pytest.fixture(scope="session")
def small_demo(fashion_mnist: FashionMNIST, tmp_path_factory: pytest.TempPathFactory) -> DemoCatalog:
    """A 700-row stratified demo catalog (600 train, 100 holdout), seed 0, 32 px."""
    return build_demo_catalog(fashion_mnist, tmp_path_factory.mktemp("demo"), limit=700, seed=0)


def files_bytes(directory: Path) -> dict[str, bytes]:
    """Every file under `directory`, by relative path."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }
