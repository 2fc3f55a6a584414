"""The publish manifest: what is in the store, from which description and model, with which bytes.

    STORE/manifests/runs/<run_id>/part-NNNNN.parquet   appended as uploads complete
    STORE/manifests/runs/<run_id>/manifest.parquet     the whole published state when the run ends
    STORE/manifests/latest                             JSON pointer to the newest manifest.parquet

A part is written only after every upload in it succeeded, so the parts of a run that was killed
still say exactly what it published. `published_index` reads the latest manifest plus the parts
of runs that never finished; `ManifestWriter.finish` folds those parts into the new manifest and
deletes them.

Several runs may publish to one destination at once. Each finishes by merging its records with
what the store records at that moment (the latest manifest and every unfinished part), and
replaces `manifests/latest` only if it is still the pointer that merge read: a conditional write
(If-Match, or If-None-Match for the first). A run that loses the race merges again. No lock is
held, so a killed run blocks nobody.
"""

from __future__ import annotations

import io
import json
import random
import secrets
import time
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from productgen.shards import Shard
from productgen.storage import NotFound, ObjectStore, PreconditionFailed, StorageError

__all__ = ["MANIFEST_COLUMNS", "ManifestWriter", "new_run_id", "published_index", "read_latest"]

MANIFEST_COLUMNS = {
    "sku": pa.string(),
    "variant": pa.int32(),  # K for a render's K-th image; -1 for a colour variant of the row's photo
    "key": pa.string(),
    "sha256": pa.string(),
    "bytes": pa.int64(),
    "etag": pa.string(),
    "content_hash": pa.string(),
    "model_version": pa.string(),
    "seed": pa.int64(),
    "rendered_at": pa.timestamp("us", tz="UTC"),
    "run_id": pa.string(),  # the run that wrote the object
}
SCHEMA = pa.schema(list(MANIFEST_COLUMNS.items()))
RUNS = "manifests/runs/"
LATEST = "manifests/latest"
PARQUET = "application/vnd.apache.parquet"


def new_run_id() -> str:
    """Sortable by start time, unique across machines: 20261123T040102Z-1a2b3c."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _to_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False), buffer)
    return buffer.getvalue()


def _read(store: ObjectStore, key: str, columns: list[str] | None = None) -> pd.DataFrame:
    schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(c) for c in columns])
    return pq.read_table(io.BytesIO(store.get(key)), schema=schema, columns=columns).to_pandas()


def _empty() -> pd.DataFrame:
    return SCHEMA.empty_table().to_pandas()


def read_latest(store: ObjectStore) -> dict[str, object] | None:
    """The `manifests/latest` pointer, or None before the first finished run."""
    if store.head(LATEST) is None:
        return None
    return json.loads(store.get(LATEST))


def _unfinished_parts(store: ObjectStore, run_id: str | None = None) -> list[str]:
    """Part keys of runs that have no manifest.parquet (killed or failed runs), and of `run_id`
    whatever it has (a run merging again after losing the race wrote its manifest already)."""
    runs: dict[str, list[str]] = {}
    finished = set()
    for obj in store.list(RUNS):
        run, _, name = obj.key[len(RUNS) :].partition("/")
        if name == "manifest.parquet":
            finished.add(run)
        elif name.startswith("part-"):
            runs.setdefault(run, []).append(obj.key)
    finished.discard(run_id)
    return [key for run in sorted(runs) if run not in finished for key in sorted(runs[run])]


def published_index(
    store: ObjectStore,
    shard: Shard | None = None,
    columns: list[str] | None = None,
    *,
    run_id: str | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Every object the store's manifests record, one row per key (newest wins); and the parts read.

    shard: only the records of that shard's SKUs (a shard's worker holds its own share).
    columns: only these (and `key`): a million-row manifest is read at a fraction of its size.
    run_id: the run that is finishing: its parts are read even once it wrote its manifest.
    """
    needed = None
    if columns is not None:
        needed = list(dict.fromkeys(["key", "rendered_at", *(["sku"] if shard else []), *columns]))
    for _ in range(8):
        latest = read_latest(store)
        keys = [latest["manifest"]] if latest else []
        parts = _unfinished_parts(store, run_id)
        try:
            frames = []
            for key in [*keys, *parts]:
                frame = _read(store, key, needed)
                frames.append(frame[shard.contains(frame["sku"])] if shard else frame)
            break
        except NotFound:  # a run finishing meanwhile merged these parts (and `latest` has them): again
            time.sleep(random.uniform(0, 0.05))
    else:
        raise StorageError(
            f"{store.uri}: other runs kept finishing while this one read the manifests; run again"
        )
    if not frames:
        index = _empty()
    elif len(frames) == 1 and not parts:  # a manifest alone: one row per key already
        index = frames[0].reset_index(drop=True)
    else:
        index = pd.concat(frames, ignore_index=True).sort_values("rendered_at", kind="stable")
        index = index.drop_duplicates("key", keep="last").reset_index(drop=True)
    return (index if columns is None else index[["key", *columns]]), parts


class ManifestWriter:
    """Collect published records; write a part every `chunk_rows`; finish with the whole manifest."""

    def __init__(
        self, store: ObjectStore, run_id: str, chunk_rows: int = 2000, part_prefix: str = "part-"
    ) -> None:
        """part_prefix: names this writer's parts; writers sharing a run (its shards) need their own."""
        if not part_prefix.startswith("part-") or "/" in part_prefix:
            raise ValueError(f"part_prefix must start with 'part-' and hold no '/'; got {part_prefix!r}")
        self.store, self.run_id, self.chunk_rows = store, run_id, chunk_rows
        self.part_prefix = part_prefix
        self.pending: list[dict[str, object]] = []
        self.parts: list[str] = []
        self.records = 0  # records flushed into parts so far
        self.bytes = 0  # the bytes of the objects they record

    def add(self, records: list[dict[str, object]]) -> None:
        self.pending.extend(records)
        if len(self.pending) >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        """Write the pending records as the next part (after their uploads succeeded)."""
        if not self.pending:
            return
        key = f"{RUNS}{self.run_id}/{self.part_prefix}{len(self.parts):05d}.parquet"
        frame = pd.DataFrame(self.pending)
        self.store.put(key, _to_bytes(frame), content_type=PARQUET)
        self.parts.append(key)
        self.records += len(frame)
        self.bytes += int(frame["bytes"].sum())
        self.pending = []

    def written(self) -> pd.DataFrame:
        """Every record flushed so far, in manifest columns (read back from this writer's parts)."""
        self.flush()
        if not self.parts:
            return _empty()
        return pd.concat([_read(self.store, key) for key in self.parts], ignore_index=True)

    def finish(
        self,
        rows: pd.DataFrame | None,
        absorbed_parts: list[str],
        summary: dict[str, object],
        *,
        model_version: str | None = None,
        attempts: int = 8,
    ) -> tuple[str, int]:
        """Merge `rows` into what the store records now, write it, point `manifests/latest` at it.

        rows: None when the records are all in parts already (a sharded run's shards wrote them).

        model_version: the manifest is the published state under one model; rows of other
        versions that other runs recorded meanwhile are left out (None: keep every row).
        Returns the manifest's key and its row count. Parts folded in are deleted afterwards.
        """
        self.flush()
        key = f"{RUNS}{self.run_id}/manifest.parquet"
        for attempt in range(attempts):
            current = self.store.head(LATEST)
            others, parts = published_index(self.store, run_id=self.run_id)
            if model_version is not None:
                others = others[others["model_version"] == model_version]
            if rows is None or not len(rows):  # everything is in the store's manifest and parts
                merged = others
            else:
                merged = pd.concat([others, rows], ignore_index=True) if len(others) else rows
                merged = merged.sort_values("rendered_at", kind="stable").drop_duplicates("key", keep="last")
            del others
            self.store.put(key, _to_bytes(merged), content_type=PARQUET)
            pointer = {"run_id": self.run_id, "manifest": key, "rows": len(merged), **summary}
            body = json.dumps(pointer, indent=2, default=str).encode()
            try:
                self.store.put(
                    LATEST, body, content_type="application/json",
                    if_match=current.etag if current else None, if_none_match=current is None,
                )  # fmt: skip
            except PreconditionFailed:  # another run finished in between: merge with it again
                time.sleep(random.uniform(0, 0.05 * 2**attempt))
                continue
            for part in dict.fromkeys([*absorbed_parts, *parts, *self.parts]):  # all in `merged`
                self.store.delete(part)
            return key, len(merged)
        raise StorageError(
            f"{self.store.uri}/{LATEST}: other runs replaced it {attempts} times while this run merged "
            "its manifest; run again (nothing is rendered twice)"
        )
