"""Shards: stable by SKU; a sharded publish writes what one process writes, exactly once."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from productgen.manifest import read_latest
from productgen.publish import PublishConfig, finish_publish, publish
from productgen.render import RenderConfig, RenderPipeline
from productgen.shards import Shard, shard_of
from productgen.snapshot import Snapshot
from productgen.storage import ObjectStore, open_store
from productgen.text import EncodeConfig, encode_snapshot


def _manifest(store: ObjectStore):
    latest = read_latest(store)
    frame = pq.read_table(io.BytesIO(store.get(latest["manifest"]))).to_pandas()
    return frame.sort_values("key").reset_index(drop=True)


def _objects(store: ObjectStore) -> dict[str, bytes]:
    return {o.key: store.get(o.key) for o in store.list() if not o.key.startswith("manifests/")}


def test_a_skus_shard_depends_on_the_sku_alone() -> None:
    skus = [f"SKU-{i}" for i in range(5000)]
    eight = shard_of(skus, 8)
    assert np.array_equal(eight, shard_of(list(reversed(skus)), 8)[::-1])  # not on order or neighbours
    assert np.array_equal(shard_of([*skus[:10], "NEW-1"], 8)[:10], eight[:10])  # nor on other rows
    counts = np.bincount(eight, minlength=8)
    assert counts.min() > 500 and counts.max() < 750  # balanced
    masks = [Shard(i, 8).contains(skus) for i in range(8)]
    assert (np.sum(masks, axis=0) == 1).all()  # every sku in exactly one shard
    assert Shard(3, 8).name == "s0003of0008"
    for bad in ((8, 8), (-1, 8), (0, 0), (0, 5000)):
        with pytest.raises(ValueError, match="shard"):
            Shard(*bad)


def test_shards_write_what_one_process_writes(tiny_snapshot: Path, tiny_run: Path, tmp_path: Path) -> None:
    pipeline = RenderPipeline.from_run(tiny_run)
    config = PublishConfig(render=RenderConfig(batch_size=32), manifest_chunk=16)
    single = open_store(str(tmp_path / "single"))
    publish(tiny_snapshot, pipeline, single, config)

    sharded = open_store(str(tmp_path / "sharded"))
    shards = [publish(tiny_snapshot, pipeline, sharded, config, shard=s, run_id="R1") for s in Shard.all(3)]
    assert sum(s.published for s in shards) == 280 and all(s.published > 50 for s in shards)
    assert read_latest(sharded) is None  # no manifest until the run finishes
    summary = finish_publish(sharded, shards, seconds=1.0)
    assert (summary.images, summary.published, summary.rows) == (280, 280, 280)

    assert _objects(single) == _objects(sharded)  # byte-identical objects
    one, many = _manifest(single), _manifest(sharded)
    columns = ["sku", "variant", "key", "sha256", "bytes", "content_hash", "model_version", "seed"]
    assert one[columns].equals(many[columns])
    assert not [o.key for o in sharded.list("manifests/runs/") if "/part-" in o.key]  # parts folded in

    # a second sharded run has nothing to do; the manifest stays whole
    again = [publish(tiny_snapshot, pipeline, sharded, config, shard=s, run_id="R2") for s in Shard.all(3)]
    assert sum(s.published for s in again) == 0 and sum(s.unchanged for s in again) == 280
    assert finish_publish(sharded, again, seconds=1.0).images == 280


def test_a_shard_run_again_after_a_lost_worker_duplicates_nothing(
    tiny_snapshot: Path, tiny_run: Path, tmp_path: Path
) -> None:
    """A shard that died after recording some parts and writing some unrecorded objects is re-run:
    every image ends up written once and recorded once."""
    pipeline = RenderPipeline.from_run(tiny_run)
    config = PublishConfig(render=RenderConfig(batch_size=16), manifest_chunk=16, upload_workers=1)
    store = open_store(str(tmp_path / "dest"))
    shard = Shard(1, 2)

    class Dies(Exception):
        pass

    seen = []

    def die_midway(progress) -> None:
        seen.append(progress.done)
        if progress.done >= 48:
            raise Dies  # the worker is gone after 48 images: parts for some, objects for more

    with pytest.raises(Dies):
        publish(tiny_snapshot, pipeline, store, config, shard=shard, run_id="R1", on_progress=die_midway)
    first = {o.key: o.etag for o in store.list() if not o.key.startswith("manifests/")}
    assert len(first) >= 48

    retried = publish(tiny_snapshot, pipeline, store, config, shard=shard, run_id="R1")
    other = publish(tiny_snapshot, pipeline, store, config, shard=Shard(0, 2), run_id="R1")
    summary = finish_publish(store, [retried, other], seconds=1.0)
    manifest = _manifest(store)
    objects = {o.key: o.etag for o in store.list() if not o.key.startswith("manifests/")}
    assert summary.images == len(manifest) == len(objects) == 280
    assert manifest["key"].is_unique and set(manifest["key"]) == set(objects)
    rows = Snapshot(tiny_snapshot).read_rows(["sku"])["sku"]
    in_shard = int(shard.contains(rows).sum())
    assert retried.published == in_shard - len(first)  # what the first attempt wrote is not written again
    assert retried.unchanged + retried.recovered == len(first) and retried.recovered > 0


def test_sharded_encode_fills_the_cache_and_one_pass_writes_the_same_tables(
    tiny_snapshot: Path, text_encoder, tmp_path: Path
) -> None:
    snap = tmp_path / "snap"
    snap.mkdir()
    for name in ("valid.parquet", "summary.json"):
        shutil.copy(tiny_snapshot / name, snap / name)
    cache = tmp_path / "cache"
    config = EncodeConfig()
    parts = [encode_snapshot(snap, cache, config, encoder=text_encoder, shard=s) for s in Shard.all(3)]
    assert sum(p.rows for p in parts) == 280 and all(p.encoded > 0 for p in parts)
    assert not Snapshot(snap).encoded  # shards only fill the cache
    assembled = encode_snapshot(snap, cache, EncodeConfig(), encoder=text_encoder)
    assert assembled.rows == 280 and assembled.encoded == 0  # every text came from the shards' cache
    assert pq.read_table(snap / "reads.parquet").equals(pq.read_table(tiny_snapshot / "reads.parquet"))
    for column in ("embedding", "color_embedding", "category_embedding"):  # other batch mates: float noise
        ours = Snapshot(snap).read_embeddings(column)
        one_pass = Snapshot(tiny_snapshot).read_embeddings(column)
        assert np.allclose(ours, one_pass, atol=1e-5) and np.abs(ours).sum() > 0


def test_windows_of_a_few_rows_publish_the_same_bytes(
    tiny_snapshot: Path, tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The planner and the conditions read the snapshot a window at a time: windows of 50 rows
    (a million-row catalog's windows, scaled down) publish what one window does."""
    pipeline = RenderPipeline.from_run(tiny_run)
    whole = open_store(str(tmp_path / "whole"))
    publish(tiny_snapshot, pipeline, whole)
    monkeypatch.setattr("productgen.snapshot.STREAM_ROWS", 50)
    windows = open_store(str(tmp_path / "windows"))
    publish(tiny_snapshot, pipeline, windows)
    sharded = open_store(str(tmp_path / "sharded"))
    parts = [publish(tiny_snapshot, pipeline, sharded, shard=s, run_id="R") for s in Shard.all(2)]
    finish_publish(sharded, parts, 1.0)
    assert _objects(whole) == _objects(windows) == _objects(sharded) and len(_objects(whole)) == 280
    columns = ["sku", "variant", "key", "sha256", "content_hash", "seed"]
    assert _manifest(whole)[columns].equals(_manifest(windows)[columns])
    assert _manifest(whole)[columns].equals(_manifest(sharded)[columns])
