"""Shared fixtures: the real Fashion-MNIST files and small demo catalogs built from them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from productgen.catalog import DemoCatalog, FashionMNIST, build_demo_catalog, load_fashion_mnist
from productgen.catalog.fashion_mnist import FashionMNISTSource
from productgen.storage import S3Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the packaged text model needs no hub (as `make test`)


@pytest.fixture(scope="session")
def fashion_mnist() -> FashionMNIST:
    """The real dataset, found the way the CLI finds it (`make setup` made sure it is there)."""
    return load_fashion_mnist(FashionMNISTSource.from_env(os.environ))


@pytest.fixture(scope="session")
def small_demo(fashion_mnist: FashionMNIST, tmp_path_factory: pytest.TempPathFactory) -> DemoCatalog:
    """A 700-row stratified demo catalog (600 train, 100 holdout), seed 0, 32 px."""
    return build_demo_catalog(fashion_mnist, tmp_path_factory.mktemp("demo"), limit=700, seed=0)


def files_bytes(directory: Path) -> dict[str, bytes]:
    """Every file under `directory`, by relative path."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-compatible server on 127.0.0.1, spoken to over HTTP like MinIO; yields its URL."""
    from productgen.devs3 import start_local_s3

    server = start_local_s3()
    yield server.url
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3Settings:
    """AWS_* variables for the local server (test credentials), and the settings they mean."""
    for name, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    return S3Settings(endpoint_url=s3_endpoint)


@pytest.fixture(scope="session")
def text_encoder():
    """The packaged MiniLM model, loaded once for the session."""
    from productgen.text import EncodeConfig, TextEncoder

    return TextEncoder(EncodeConfig())


@pytest.fixture(scope="session")
def tiny_snapshot(
    fashion_mnist: FashionMNIST, text_encoder, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A demo catalog of 280 rows (240 train, 40 holdout), ingested and encoded: ready to train."""
    from productgen.catalog.ingest import ingest
    from productgen.text import EncodeConfig, encode_snapshot

    root = tmp_path_factory.mktemp("tiny")
    demo = build_demo_catalog(fashion_mnist, root / "demo", limit=280, seed=0)
    ingest(demo.catalog_parquet, root / "snap")
    encode_snapshot(root / "snap", root / "cache", EncodeConfig(), encoder=text_encoder)
    return root / "snap"


@pytest.fixture(scope="session")
def tiny_run(tiny_snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cVAE trained for 20 steps on the tiny snapshot: enough to render, in a few seconds."""
    return train_tiny(tiny_snapshot, tmp_path_factory.mktemp("tiny-run") / "run", steps=20)


def train_tiny(snapshot: Path, run: Path, *, steps: int, seed: int = 0, resume: bool = False) -> Path:
    """A small-width cpu-demo model trained for `steps` steps into `run`."""
    import dataclasses

    from productgen.train import train, train_config

    config = train_config("cpu-demo", batch_size=16, g_ch=8, d_ch=8, sample_every=1000, checkpoint_every=1000)
    train(
        snapshot,
        run,
        dataclasses.replace(config, max_steps=steps, max_minutes=None, seed=seed),
        resume=resume,
    )
    return run
