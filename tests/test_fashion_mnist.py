"""Finding, verifying and downloading Fashion-MNIST."""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from productgen.catalog import FashionMNIST, FashionMNISTSource, FashionMNISTUnavailable, load_fashion_mnist
from productgen.catalog.fashion_mnist import locate_fashion_mnist


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def file_server(fashion_mnist: FashionMNIST, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving a copy of the dataset's files; yields (url, its folder)."""
    served = tmp_path / "served"
    shutil.copytree(fashion_mnist.directory, served)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", served
    server.shutdown()
    server.server_close()


def test_the_real_dataset_has_its_official_shape(fashion_mnist: FashionMNIST) -> None:
    """60,000 train and 10,000 test photos, 28x28, ten balanced categories."""
    assert fashion_mnist.train_images.shape == (60_000, 28, 28)
    assert fashion_mnist.test_images.shape == (10_000, 28, 28)
    assert np.bincount(fashion_mnist.train_labels).tolist() == [6000] * 10
    assert np.bincount(fashion_mnist.test_labels).tolist() == [1000] * 10


def test_nothing_found_names_all_three_ways(tmp_path: Path) -> None:
    """With no folder, no Debian package and no reachable download, one message names all three."""
    source = FashionMNISTSource(
        directory=tmp_path / "mine",
        system_dir=tmp_path / "debian",
        cache_dir=tmp_path / "cache",
        base_url=f"http://127.0.0.1:{_free_port()}/",
        download_timeout_s=5,
    )
    with pytest.raises(FashionMNISTUnavailable) as info:
        locate_fashion_mnist(source)
    message = str(info.value)
    assert "\n" not in message
    assert "PRODUCTGEN_FASHION_MNIST_DIR" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "download" in message and "failed" in message


def test_a_truncated_copy_is_refused_and_the_next_source_is_used(
    fashion_mnist: FashionMNIST, tmp_path: Path
) -> None:
    """A user folder with a damaged file does not pass verification; the system copy is used."""
    mine = tmp_path / "mine"
    shutil.copytree(fashion_mnist.directory, mine)
    damaged = next(mine.glob("t10k-labels*"))
    damaged.write_bytes(damaged.read_bytes()[:-100])
    source = FashionMNISTSource(directory=mine, system_dir=fashion_mnist.directory, base_url=None)
    assert locate_fashion_mnist(source) == fashion_mnist.directory

    alone = FashionMNISTSource(directory=mine, system_dir=tmp_path / "none", base_url=None)
    with pytest.raises(FashionMNISTUnavailable, match="t10k-labels"):
        locate_fashion_mnist(alone)


def test_download_fetches_verifies_and_caches(file_server: tuple[str, Path], tmp_path: Path) -> None:
    """The download path fetches over HTTP into the cache; a second call needs no server."""
    url, _ = file_server
    cache = tmp_path / "cache"
    source = FashionMNISTSource(directory=None, system_dir=tmp_path / "none", cache_dir=cache, base_url=url)
    data = load_fashion_mnist(source)
    assert data.directory == cache
    assert data.test_images.shape == (10_000, 28, 28)
    offline = FashionMNISTSource(directory=None, system_dir=tmp_path / "none", cache_dir=cache, base_url=None)
    assert locate_fashion_mnist(offline) == cache


def test_a_corrupt_download_is_rejected(file_server: tuple[str, Path], tmp_path: Path) -> None:
    """Bytes that do not match the dataset's checksums never reach the caller."""
    url, served = file_server
    labels = next(served.glob("train-labels*"))
    labels.write_bytes(labels.read_bytes().replace(b"\x01", b"\x02", 1))
    source = FashionMNISTSource(
        directory=None, system_dir=tmp_path / "none", cache_dir=tmp_path / "cache", base_url=url
    )
    with pytest.raises(FashionMNISTUnavailable, match="train-labels"):
        locate_fashion_mnist(source)
