"""Shards of a snapshot for fan-out: each SKU belongs to one shard, chosen by a hash of the SKU alone.

    shard of a row = blake2b(sku) mod count

A row's shard never depends on the other rows, so a catalog that changed in a few rows changes
only those rows' shards' work; a shard re-run after a lost worker plans exactly the same rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_SHARDS", "Shard", "shard_of"]

MAX_SHARDS = 4096


def shard_of(skus: Iterable[str], count: int) -> np.ndarray:
    """The shard index of each SKU among `count` shards."""
    digests = (hashlib.blake2b(str(s).encode(), digest_size=8).digest() for s in skus)
    return np.fromiter((int.from_bytes(d, "big") % count for d in digests), np.int64)


@dataclass(frozen=True)
class Shard:
    """One of `count` shards: the SKUs whose hash falls in it."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"shard count must be from 1 to {MAX_SHARDS}; got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be from 0 to {self.count - 1}; got {self.index}")

    @classmethod
    def all(cls, count: int) -> list[Shard]:
        return [cls(i, count) for i in range(count)]

    @property
    def name(self) -> str:
        """`s0003of0008`: sorts in shard order, names files and task runs."""
        return f"s{self.index:04d}of{self.count:04d}"

    def contains(self, skus: Iterable[str]) -> np.ndarray:
        """A boolean mask: which of `skus` belong to this shard."""
        return shard_of(skus, self.count) == self.index
