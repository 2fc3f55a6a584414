"""The publish manifest: parts as uploads land, the whole state at the end, killed runs folded in."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from productgen.disks3 import DiskS3
from productgen.manifest import ManifestWriter, new_run_id, published_index, read_latest
from productgen.storage import PreconditionFailed, S3Settings, open_store

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _record(key: str, run_id: str, minutes: int, content_hash: str = "h") -> dict:
    return {
        "sku": key.split("/")[1].split(".")[0], "variant": 0, "key": key, "sha256": "0" * 64, "bytes": 10,
        "etag": "e", "content_hash": content_hash, "model_version": key.split("/")[0], "seed": 1,
        "rendered_at": T0 + timedelta(minutes=minutes), "run_id": run_id,
    }  # fmt: skip


def test_parts_are_written_per_chunk_and_finish_folds_them(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    writer = ManifestWriter(store, "run-a", chunk_rows=2)
    for i in range(5):  # uploads land one by one
        writer.add([_record(f"m1/s{i}.png", "run-a", i)])
    parts = sorted(o.key for o in store.list("manifests/runs/run-a/"))
    assert len(parts) == 2  # two full chunks; the fifth record waits for a flush
    index, unfinished = published_index(store)
    assert len(index) == 4 and unfinished == parts  # a killed run's parts still count

    written = writer.written()
    key, rows = writer.finish(written, unfinished, {"model_version": "m1"})
    assert rows == 5
    assert [o.key for o in store.list("manifests/runs/")] == [key]  # parts gone, manifest kept
    assert read_latest(store)["manifest"] == key and read_latest(store)["rows"] == 5
    index, unfinished = published_index(store)
    assert sorted(index["key"]) == [f"m1/s{i}.png" for i in range(5)] and unfinished == []


def test_newest_record_of_a_key_wins(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    first = ManifestWriter(store, "run-a")
    first.add([_record("m1/a.png", "run-a", 0, "old")])
    first.finish(first.written(), [], {})
    killed = ManifestWriter(store, "run-b")  # never finishes
    killed.add([_record("m1/a.png", "run-b", 5, "new")])
    killed.flush()
    index, unfinished = published_index(store)
    assert index.set_index("key").loc["m1/a.png", "content_hash"] == "new"
    assert len(unfinished) == 1


def test_run_ids_sort_by_start_time_and_are_unique() -> None:
    ids = [new_run_id() for _ in range(50)]
    assert len(set(ids)) == 50
    assert all(i[:16] >= ids[0][:16] for i in ids)  # the UTC start second leads


class _LatestHeldBack:
    """A real store whose first write of manifests/latest waits until `release` is set: the
    moment another run finishes in between (the race two renders to one prefix run)."""

    def __init__(self, store, release: threading.Event, reached: threading.Event) -> None:
        self.store, self.release, self.reached, self.held = store, release, reached, False
        self.uri = store.uri

    def put(self, key, body, **kwargs):
        if key == "manifests/latest" and not self.held:
            self.held = True
            self.reached.set()
            assert self.release.wait(30)
        return self.store.put(key, body, **kwargs)

    def __getattr__(self, name):
        return getattr(self.store, name)


@pytest.mark.parametrize("kind", ["local", "s3", "disk-s3"])
def test_two_runs_finishing_at_once_both_land_in_the_manifest(kind: str, tmp_path: Path, s3_env) -> None:
    uri = (
        str(tmp_path / "store") if kind == "local" else f"s3://race-{kind}-{sum(map(ord, tmp_path.name))}/out"
    )
    disk = DiskS3(tmp_path / "disk").start() if kind == "disk-s3" else None
    settings = S3Settings(endpoint_url=disk.url) if disk else s3_env
    store = open_store(uri, settings, create_bucket=True)
    first = ManifestWriter(store, "run-a")
    first.add([_record("m1/base.png", "run-a", 0)])
    first.finish(first.written(), [], {})

    release, reached = threading.Event(), threading.Event()
    slow = ManifestWriter(_LatestHeldBack(store, release, reached), "run-b")
    slow.add([_record(f"m1/b{i}.png", "run-b", 10 + i) for i in range(3)])
    fast = ManifestWriter(store, "run-c")
    fast.add([_record(f"m1/c{i}.png", "run-c", 20 + i) for i in range(3)])
    result = {}
    thread = threading.Thread(target=lambda: result.update(b=slow.finish(slow.written(), [], {})))
    thread.start()
    assert reached.wait(30)  # run-b merged what it saw and is about to replace latest
    fast.finish(fast.written(), [], {})  # run-c finishes first
    release.set()
    thread.join(30)
    index, unfinished = published_index(store)
    expected = ["m1/b0.png", "m1/b1.png", "m1/b2.png", "m1/base.png", "m1/c0.png", "m1/c1.png", "m1/c2.png"]
    assert sorted(index["key"]) == expected and unfinished == []
    assert result["b"][1] == 7 and read_latest(store)["run_id"] == "run-b"
    if disk:
        disk.stop()


def test_a_conditional_write_refuses_a_changed_object(tmp_path: Path, s3_env) -> None:
    for uri in (str(tmp_path / "store"), f"s3://cond-{sum(map(ord, tmp_path.name))}"):
        store = open_store(uri, s3_env, create_bucket=True)
        etag = store.put("k", b"1", if_none_match=True)
        with pytest.raises(PreconditionFailed):
            store.put("k", b"2", if_none_match=True)
        with pytest.raises(PreconditionFailed):
            store.put("k", b"2", if_match="0" * 32)
        assert store.put("k", b"3", if_match=etag) and store.get("k") == b"3"


def test_a_run_merging_again_after_losing_the_race_keeps_its_later_parts(tmp_path: Path) -> None:
    """run-b wrote its manifest, lost the race to run-c (which absorbed b's first part), then merges
    again: the part run-c never saw must land, though run-b's folder already holds a manifest."""
    store = open_store(str(tmp_path / "store"))
    b = ManifestWriter(store, "run-b", chunk_rows=1)
    b.add([_record("m1/b0.png", "run-b", 0)])
    c = ManifestWriter(store, "run-c")
    c.add([_record("m1/c0.png", "run-c", 1)])
    c.finish(None, [], {})  # absorbs and deletes b's first part
    b.add([_record("m1/b1.png", "run-b", 2)])
    store.put("manifests/runs/run-b/manifest.parquet", b"its losing attempt's merge")
    b.finish(None, [], {})
    index, unfinished = published_index(store)
    assert sorted(index["key"]) == ["m1/b0.png", "m1/b1.png", "m1/c0.png"] and unfinished == []


def test_a_part_merged_away_while_the_index_is_read_is_found_in_latest(tmp_path: Path) -> None:
    """run-b lists run-a's part; run-a finishes (merges and deletes it) before run-b reads it."""
    store = open_store(str(tmp_path / "store"))
    a = ManifestWriter(store, "run-a")
    a.add([_record("m1/a0.png", "run-a", 0)])
    a.flush()

    class FinishesFirst:
        """The store as run-b sees it: run-a finishes just before run-b's first read of a part."""

        def __init__(self) -> None:
            self.done = False

        def get(self, key: str) -> bytes:
            if "/part-" in key and not self.done:
                self.done = True
                a.finish(None, [], {})
            return store.get(key)

        def __getattr__(self, name: str):
            return getattr(store, name)

    index, _ = published_index(FinishesFirst())
    assert list(index["key"]) == ["m1/a0.png"]
