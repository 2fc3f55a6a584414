"""Find, verify and read Zalando's Fashion-MNIST product photos (the demo catalog's images).

Xiao, Rasul & Vollgraf 2017, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
Learning Algorithms". 70,000 grey 28x28 product photos in 10 categories, stored as four IDX files.

Where the files come from, in order: a folder the caller names (the CLI passes
`$PRODUCTGEN_FASHION_MNIST_DIR`), the Debian package `dataset-fashion-mnist`
(/usr/share/datasets/fashion-mnist), else a download from the dataset's own URLs into a cache
folder. Every file is checked against the size and SHA-256 of its decompressed bytes, so a
recompressed copy (Debian's) and the original both pass and a truncated one does not.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DEBIAN_DIR",
    "ENV_VAR",
    "OFFICIAL_BASE_URL",
    "FashionMNIST",
    "FashionMNISTSource",
    "FashionMNISTUnavailable",
    "load_fashion_mnist",
    "locate_fashion_mnist",
]

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
OFFICIAL_BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
ENV_VAR = "PRODUCTGEN_FASHION_MNIST_DIR"


@dataclass(frozen=True)
class _IdxFile:
    name: str  # without .gz
    raw_bytes: int  # decompressed size
    raw_sha256: str  # of the decompressed bytes


_FILES = {
    "train_images": _IdxFile(
        "train-images-idx3-ubyte",
        47_040_016,
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    "train_labels": _IdxFile(
        "train-labels-idx1-ubyte",
        60_008,
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    "test_images": _IdxFile(
        "t10k-images-idx3-ubyte",
        7_840_016,
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    "test_labels": _IdxFile(
        "t10k-labels-idx1-ubyte",
        10_008,
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
}


class FashionMNISTUnavailable(RuntimeError):
    """No verified copy of Fashion-MNIST could be found or fetched."""


@dataclass(frozen=True)
class FashionMNISTSource:
    """Where to look for the dataset; built at the edge (CLI, tests), never from the environment here."""

    directory: Path | None = None  # the user's folder; tried first
    system_dir: Path = DEBIAN_DIR
    cache_dir: Path = Path.home() / ".cache" / "productgen" / "fashion-mnist"
    base_url: str | None = OFFICIAL_BASE_URL  # None: never download
    download_timeout_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str], directory: Path | None = None) -> FashionMNISTSource:
        """`directory` if given, else $PRODUCTGEN_FASHION_MNIST_DIR; the edge passes os.environ."""
        named = env.get(ENV_VAR)
        return cls(directory=directory or (Path(named) if named else None))


@dataclass(frozen=True)
class FashionMNIST:
    """The whole dataset in memory: grey images (N, 28, 28) uint8, white item on black."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    directory: Path


def _candidate(directory: Path, spec: _IdxFile) -> Path | None:
    for name in (spec.name + ".gz", spec.name):
        path = directory / name
        if path.is_file():
            return path
    return None


def _read_raw(path: Path) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return f.read()


def _verify(path: Path, spec: _IdxFile) -> bytes:
    """Return the decompressed bytes of `path`, or raise ValueError saying why they are wrong."""
    try:
        raw = _read_raw(path)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: unreadable ({e})") from None
    if len(raw) != spec.raw_bytes:
        raise ValueError(f"{path}: {len(raw)} bytes, expected {spec.raw_bytes}")
    if hashlib.sha256(raw).hexdigest() != spec.raw_sha256:
        raise ValueError(f"{path}: checksum mismatch")
    return raw


def _verified_dir(directory: Path) -> tuple[dict[str, bytes] | None, str]:
    """All four files of `directory`, verified; else None and the reason."""
    if not directory.is_dir():
        return None, f"{directory} does not exist"
    found: dict[str, bytes] = {}
    for key, spec in _FILES.items():
        path = _candidate(directory, spec)
        if path is None:
            return None, f"{directory} has no {spec.name}[.gz]"
        try:
            found[key] = _verify(path, spec)
        except ValueError as e:
            return None, str(e)
    return found, ""


def _download(source: FashionMNISTSource) -> tuple[dict[str, bytes] | None, str]:
    """Fetch the four files into the cache folder, each written atomically; verify them."""
    assert source.base_url is not None
    source.cache_dir.mkdir(parents=True, exist_ok=True)
    for spec in _FILES.values():
        target = source.cache_dir / (spec.name + ".gz")
        if target.is_file():
            try:
                _verify(target, spec)
                continue
            except ValueError:
                target.unlink()
        url = source.base_url.rstrip("/") + "/" + spec.name + ".gz"
        try:
            with (
                urllib.request.urlopen(url, timeout=source.download_timeout_s) as response,
                tempfile.NamedTemporaryFile(dir=source.cache_dir, delete=False) as tmp,
            ):
                shutil.copyfileobj(response, tmp)
            Path(tmp.name).replace(target)
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            return None, f"download of {url} failed ({reason})"
    return _verified_dir(source.cache_dir)


def _locate(source: FashionMNISTSource) -> tuple[Path, dict[str, bytes]]:
    reasons = []
    for label, directory in (
        (f"${ENV_VAR}", source.directory),
        ("Debian package dataset-fashion-mnist", source.system_dir),
        ("download cache", source.cache_dir),
    ):
        if directory is None:
            reasons.append(f"{label}: not set")
            continue
        found, reason = _verified_dir(directory)
        if found is not None:
            return directory, found
        reasons.append(f"{label}: {reason}")
    if source.base_url is None:
        reasons.append("download: disabled")
    else:
        found, reason = _download(source)
        if found is not None:
            return source.cache_dir, found
        reasons.append(f"download: {reason}")
    raise FashionMNISTUnavailable(
        "Fashion-MNIST not found. Either set "
        f"{ENV_VAR} to a folder holding the four IDX files, or install the Debian package "
        "(apt-get install dataset-fashion-mnist), or allow the download from "
        f"{source.base_url or OFFICIAL_BASE_URL}. Tried: " + "; ".join(reasons)
    )


def locate_fashion_mnist(source: FashionMNISTSource) -> Path:
    """Return the folder of a verified Fashion-MNIST copy, downloading it as the last resort."""
    return _locate(source)[0]


def _parse_idx(raw: bytes, ndim: int) -> np.ndarray:
    # IDX: 2 zero bytes, dtype code 0x08 (uint8), ndim, then ndim big-endian uint32 sizes.
    assert raw[2] == 0x08 and raw[3] == ndim, "not a uint8 IDX file"
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(source: FashionMNISTSource) -> FashionMNIST:
    """Locate, verify and decode the dataset: train (60000, 28, 28), test (10000, 28, 28)."""
    directory, raw = _locate(source)
    return FashionMNIST(
        train_images=_parse_idx(raw["train_images"], 3),
        train_labels=_parse_idx(raw["train_labels"], 1),
        test_images=_parse_idx(raw["test_images"], 3),
        test_labels=_parse_idx(raw["test_labels"], 1),
        directory=directory,
    )
