"""Render a snapshot and publish one image per SKU (and variant) to an ObjectStore, exactly once.

    1. plan      snapshot rows x variants -> key {model_version}/{sku}[-vK].{ext}
    2. skip      rows whose (key, content hash, model_version) a manifest already records; the
                 content hash covers the description and the attributes read from it
    3. recover   objects a killed run wrote but never recorded: adopted after a HEAD, not rewritten
    4. render    generator batches in this thread; encode + upload on a thread pool, bounded
    5. record    manifest parts as uploads complete; the whole manifest and `latest` at the end

Memory stays flat with catalog size: conditions are read a window of snapshot rows at a time,
and at most `max_in_flight` images are between the generator and the store. PIL's encoders and
boto3's sockets release the GIL, so the pool keeps every core busy while this thread generates
the next batch.

Fan-out: with `shard`, one call publishes one shard's SKUs (productgen.shards) and records them
in parts of its own; `finish_publish` then writes the run's manifest from every shard's parts.
The flows run the shards as tasks on Dask workers; any process that can reach the store can run
a shard.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from productgen.attributes import LOW_CONFIDENCE
from productgen.manifest import ManifestWriter, new_run_id, published_index
from productgen.render import RenderConfig, RenderPipeline, encode_image, noise_seed
from productgen.shards import Shard
from productgen.snapshot import Snapshot
from productgen.storage import ObjectStore, PreconditionFailed

__all__ = [
    "PublishConfig", "PublishProgress", "PublishSummary", "finish_publish", "image_key", "publish",
    "publish_plan", "rendered_from",
]  # fmt: skip

CACHE_CONTROL = "public, max-age=31536000, immutable"  # a key never changes model version
_HEADS_AT_MOST = 50_000  # planned images looked up one by one; more: list the prefix first


@dataclass(frozen=True)
class PublishConfig:
    """What to render and how hard to push the store."""

    render: RenderConfig = field(default_factory=RenderConfig)
    only_missing: bool = False  # only rows whose catalog `image` is empty
    upload_workers: int = 16
    max_in_flight: int = 2048  # images rendered but not yet stored
    manifest_chunk: int = 2000


@dataclass
class PublishProgress:
    total: int  # images this run has to publish (after skips)
    done: int
    seconds: float


@dataclass
class PublishSummary:
    run_id: str
    dest: str
    model_version: str
    rows: int  # snapshot rows considered
    images: int  # images the manifest now records
    published: int  # written by this run
    unchanged: int  # already published with the same description and model
    recovered: int  # written by a killed run, adopted without rewriting
    low_confidence: int  # rows rendered from a colour or category read with low confidence
    retried_writes: int  # writes the store needed more than one attempt for (a flaky store)
    adopted_writes: int  # of those, images whose first attempt had landed: kept, not written twice
    bytes: int
    seconds: float
    manifest: str
    plan_seconds: float = 0.0  # planning: the rows, what the manifests record, what to skip
    merge_seconds: float = 0.0  # the run's manifest merged and `latest` replaced

    @property
    def images_per_s(self) -> float:
        return self.published / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, object]:
        rates = {"images_per_s": round(self.images_per_s, 1), "seconds": round(self.seconds, 2)}
        return {**self.__dict__, **rates}

    @classmethod
    def from_json(cls, content: dict[str, object]) -> PublishSummary:
        """Back from `to_json` (a shard's result, handed to `finish_publish`)."""
        return cls(**{k: v for k, v in content.items() if k in cls.__dataclass_fields__})


def image_key(model_version: str, sku: str, variant: int, image_format: str) -> str:
    suffix = f"-v{variant}" if variant else ""
    return f"{model_version}/{sku}{suffix}.{image_format}"


def rendered_from(rows: pd.DataFrame, truncation: float) -> np.ndarray:
    """Per row, a hash of everything its image is made from besides the model: its description's
    content hash, the attributes read from it (a newly pinned mapping re-renders the row) and the
    truncation it is rendered with (left out at 1, so earlier manifests still match)."""
    columns = [rows["content_hash"], rows["category"], rows["color"], rows["color_hex"]]
    if truncation != 1.0:
        columns.append([truncation] * len(rows))
    parts = zip(*columns, strict=True)
    return np.array(
        [hashlib.blake2b(repr(p).encode(), digest_size=16).hexdigest() for p in parts], dtype=object
    )


def _doubtful(rows: pd.DataFrame) -> np.ndarray:
    """Rows whose category, or a colour they name, was read with low confidence."""
    category = rows["category_confidence"].to_numpy() < LOW_CONFIDENCE
    colour = (rows["color_confidence"].to_numpy() < LOW_CONFIDENCE) & (
        rows["color_source"] != "none"
    ).to_numpy()
    return category | colour


def _plan(snap: Snapshot, version: str, config: PublishConfig, shard: Shard | None) -> pd.DataFrame:
    """One row per image to exist: row (position in the snapshot), sku, variant, key, content_hash.

    The snapshot is read a window of rows at a time; only the plan's own columns are kept.
    """
    if snap.num_rows() == 0:
        raise ValueError(f"{snap.root}: the snapshot has no valid rows; nothing to render")
    variants, frames = config.render.variants, []
    for start, rows in snap.stream_reads(["sku", "content_hash", "image"]):
        rows.index = pd.RangeIndex(start, start + len(rows))
        if shard is not None:
            rows = rows[shard.contains(rows["sku"])]
        if config.only_missing and "image" in rows.columns:
            keep = rows["image"].isna() | (rows["image"].astype(str).str.strip() == "")
            rows = rows[keep.to_numpy()]
        frames.append(
            pd.DataFrame(
                {
                    "row": np.repeat(rows.index.to_numpy(), variants),
                    "sku": np.repeat(rows["sku"].to_numpy(), variants),
                    "content_hash": np.repeat(rendered_from(rows, config.render.truncation), variants),
                    "variant": np.tile(np.arange(variants, dtype=np.int32), len(rows)),
                    "doubtful": np.repeat(_doubtful(rows), variants),
                }
            )
        )
    plan = pd.concat(frames, ignore_index=True)
    fmt = config.render.image_format
    plan["key"] = [image_key(version, s, v, fmt) for s, v in zip(plan["sku"], plan["variant"], strict=True)]
    return plan


def _metadata(item: dict, model_version: str, sha256: str) -> dict[str, str]:
    return {
        "sku": item["sku"], "variant": str(item["variant"]), "content-hash": item["content_hash"],
        "model-version": model_version, "seed": str(item["seed"]), "sha256": sha256,
    }  # fmt: skip


def _recover(
    store: ObjectStore, todo: pd.DataFrame, model_version: str, run_id: str, workers: int
) -> list[dict]:
    """Records for planned keys already in the store with this description (a killed run's work).

    A few planned keys are looked up one by one (HEADs on a pool); many, through one listing of
    the model's prefix first: a million-object listing costs a thousand pages, so it pays only
    when the HEADs would be more.
    """
    if todo.empty:
        return []
    candidates = todo
    if len(todo) > _HEADS_AT_MOST:
        present = {obj.key for obj in store.list(f"{model_version}/")}
        candidates = todo[todo["key"].isin(present)]
    items = candidates.to_dict("records")
    with ThreadPoolExecutor(workers, thread_name_prefix="recover") as pool:
        heads = list(pool.map(store.head, [item["key"] for item in items]))
    records = []
    for item, head in zip(items, heads, strict=True):
        meta = head.metadata if head else {}
        if meta.get("content-hash") == item["content_hash"] and meta.get("sha256"):
            records.append(_record(item, run_id, model_version, meta["sha256"], head.size, head.etag))
    return records


def _put_once(
    store: ObjectStore,
    key: str,
    body: bytes,
    sha256: str,
    expected: str | None,
    metadata: dict[str, str],
    content_type: str,
    adopted: list[str],
) -> str:
    """Write an image once: only if the key is still absent (or still holds what the manifest
    recorded). When a retry finds this very image already there (its first attempt landed and
    the answer was lost), it is adopted, not written a second time; another writer's object is
    replaced, as a plain write would."""
    try:
        return store.put(
            key, body, content_type=content_type, cache_control=CACHE_CONTROL, metadata=metadata,
            if_match=expected, if_none_match=expected is None,
        )  # fmt: skip
    except PreconditionFailed:
        head = store.head(key)
        if head is not None and head.metadata.get("sha256") == sha256:
            adopted.append(key)
            return head.etag
        return store.put(key, body, content_type=content_type, cache_control=CACHE_CONTROL, metadata=metadata)


def _record(item: dict, run_id: str, model_version: str, sha256: str, size: int, etag: str) -> dict:
    return {
        "sku": item["sku"], "variant": int(item["variant"]), "key": item["key"], "sha256": sha256,
        "bytes": size, "etag": etag, "content_hash": item["content_hash"], "model_version": model_version,
        "seed": int(item["seed"]), "rendered_at": datetime.now(UTC), "run_id": run_id,
    }  # fmt: skip


def publish(
    snapshot: Path,
    pipeline: RenderPipeline,
    store: ObjectStore,
    config: PublishConfig = PublishConfig(),
    *,
    on_progress: Callable[[PublishProgress], None] | None = None,
    shard: Shard | None = None,
    run_id: str | None = None,
) -> PublishSummary:
    """Render every planned image not yet published and upload it; write the run's manifest.

    shard: publish only that shard's SKUs, as one task of a run (`run_id`) whose shards run
    apart; the shard records what it wrote in parts of its own and `finish_publish` writes the
    run's manifest. A shard run again after a lost worker skips what its first attempt recorded
    and adopts what it wrote unrecorded, as a whole run does.
    """
    started = time.perf_counter()
    snap = pipeline.check_snapshot(snapshot)
    plan = _plan(snap, pipeline.version, config, shard)

    def render(todo: pd.DataFrame) -> Iterator[tuple[list[dict], np.ndarray]]:
        # conditions come a window of snapshot rows at a time: memory does not grow with the catalog
        todo_rows = todo["row"].to_numpy()
        for positions, conditions in pipeline.stream_conditions(snapshot, np.unique(todo_rows)):
            lo, hi = np.searchsorted(todo_rows, [positions[0], positions[-1] + 1])
            where = np.searchsorted(positions, todo_rows[lo:hi])  # each image's row in `conditions`
            for start in range(lo, hi, config.render.batch_size):
                items = todo.iloc[start : min(start + config.render.batch_size, hi)].to_dict("records")
                pixels = pipeline(
                    conditions=conditions[where[start - lo : start - lo + len(items)]],
                    seeds=[i["seed"] for i in items], truncation=config.render.truncation,
                ).images  # fmt: skip
                yield items, pixels

    return publish_plan(
        plan, render, store, config, version=pipeline.version, started=started,
        on_progress=on_progress, shard=shard, run_id=run_id,
    )  # fmt: skip


def publish_plan(
    plan: pd.DataFrame,
    produce: Callable[[pd.DataFrame], Iterator[tuple[list[dict], np.ndarray]]],
    store: ObjectStore,
    config: PublishConfig,
    *,
    version: str,
    started: float,
    on_progress: Callable[[PublishProgress], None] | None = None,
    shard: Shard | None = None,
    run_id: str | None = None,
) -> PublishSummary:
    """Publish the images a plan names, exactly once: steps 2-5 for any maker of pixels.

    plan: one row per image (row, sku, variant, key, content_hash, doubtful; seed where the
    image has none from its noise); produce(todo): (items, (n, S, S, 3) uint8) in todo's order.
    """
    if shard is not None and run_id is None:
        raise ValueError("a shard publishes as part of a run: give the run's run_id")
    run_id = run_id or new_run_id()

    # 2. skip what a manifest already records with the same description and model
    index, _ = published_index(store, shard, columns=["content_hash", "model_version", "etag"])
    plan = plan.merge(index[["key", "content_hash", "model_version"]], on=["key", "content_hash"], how="left")
    done_before = (plan.pop("model_version") == version).to_numpy()
    unchanged = int(done_before.sum())
    todo = plan[~done_before].sort_values(["row", "variant"], kind="stable").reset_index(drop=True)
    if "seed" not in todo.columns:
        todo["seed"] = [noise_seed(s, version, v) for s, v in zip(todo["sku"], todo["variant"], strict=True)]
    rows, low_confidence = int(plan["sku"].nunique()), int(plan.loc[plan["doubtful"], "sku"].nunique())
    # what each key to write held when recorded (a conditional write checks it is still that)
    recorded = index[index["key"].isin(todo["key"])]
    known = dict(zip(recorded["key"], recorded["etag"], strict=True))
    del plan, index, recorded  # the whole catalog's rows are not held while rendering

    # 3. adopt objects a killed run uploaded after its last manifest part
    prefix = f"part-{shard.name}-{secrets.token_hex(3)}-" if shard else "part-"
    writer = ManifestWriter(store, run_id, config.manifest_chunk, part_prefix=prefix)
    recovered = _recover(store, todo, version, run_id, config.upload_workers)
    writer.add(recovered)
    todo = todo[~todo["key"].isin({r["key"] for r in recovered})].reset_index(drop=True)
    planned = time.perf_counter() - started

    # 4. make pixels in this thread, encode + upload on the pool, at most max_in_flight pending
    adopted: list[str] = []  # writes that landed although the store's answer was lost
    retried_before = store.retried_writes
    slots = threading.BoundedSemaphore(config.max_in_flight)
    lock, completed, failures = threading.Lock(), [], []

    def store_one(item: dict, pixels: np.ndarray) -> None:
        try:
            body = encode_image(pixels, config.render)
            sha256 = hashlib.sha256(body).hexdigest()
            metadata, expected = _metadata(item, version, sha256), known.get(item["key"])
            etag = _put_once(
                store, item["key"], body, sha256, expected, metadata, config.render.content_type, adopted
            )
            with lock:
                completed.append(_record(item, run_id, version, sha256, len(body), etag))
        except Exception as e:  # the first failure stops the run; in-flight work still lands
            with lock:
                failures.append(e)
        finally:
            slots.release()

    def drain() -> None:
        with lock:
            records, completed[:] = list(completed), []
        writer.add(records)

    futures: list[Future] = []
    done = 0
    with ThreadPoolExecutor(config.upload_workers, thread_name_prefix="publish") as pool:
        for items, pixels in produce(todo) if len(todo) else ():
            for item, image in zip(items, pixels, strict=True):
                slots.acquire()
                futures.append(pool.submit(store_one, item, image))
            futures = [f for f in futures if not f.done()]
            drain()
            done += len(items)
            if on_progress:
                on_progress(PublishProgress(len(todo), done, time.perf_counter() - started))
            if failures:
                break
        wait(futures)
    drain()
    writer.flush()  # everything that landed is recorded before any failure is raised
    if failures:
        raise failures[0]

    new = writer.records - len(recovered)
    summary = PublishSummary(
        run_id=run_id, dest=store.uri, model_version=version, rows=rows, images=writer.records,
        published=new, unchanged=unchanged, recovered=len(recovered), low_confidence=low_confidence,
        retried_writes=store.retried_writes - retried_before, adopted_writes=len(adopted),
        bytes=writer.bytes, seconds=time.perf_counter() - started, manifest="", plan_seconds=planned,
    )  # fmt: skip
    if shard is not None:
        return summary  # the run's manifest is finish_publish's, once every shard is done

    # 5. the whole published state under this model: what the store's manifest and parts record,
    #    this run's parts included (rows this run did not plan, e.g. with --only-missing, stay)
    merging = time.perf_counter()
    key, summary.images = writer.finish(
        None, [], {"model_version": version, "published": new, "dest": store.uri}, model_version=version
    )
    summary.manifest = f"{store.uri}/{key}"
    summary.merge_seconds = time.perf_counter() - merging
    summary.seconds = time.perf_counter() - started
    return summary


def finish_publish(store: ObjectStore, shards: Sequence[PublishSummary], seconds: float) -> PublishSummary:
    """The manifest of a sharded run: every shard's parts merged with what the store recorded.

    shards: one summary per shard, all of one run and model; seconds: the run's wall time.
    """
    runs = {(s.run_id, s.model_version) for s in shards}
    if len(runs) != 1:
        raise ValueError(f"finish_publish merges the shards of one run; got {sorted(runs)}")
    ((run_id, version),) = runs
    counts = {
        name: sum(getattr(s, name) for s in shards)
        for name in ("rows", "published", "unchanged", "recovered", "low_confidence", "retried_writes",
                     "adopted_writes", "bytes")
    }  # fmt: skip
    writer, merging = ManifestWriter(store, run_id), time.perf_counter()
    key, images = writer.finish(
        None, [], {"model_version": version, "published": counts["published"], "dest": store.uri,
                   "shards": len(shards)},
        model_version=version,
    )  # fmt: skip
    return PublishSummary(
        run_id=run_id, dest=store.uri, model_version=version, images=images, seconds=seconds,
        manifest=f"{store.uri}/{key}", plan_seconds=max(s.plan_seconds for s in shards),
        merge_seconds=time.perf_counter() - merging, **counts,
    )  # fmt: skip
