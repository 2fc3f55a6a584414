"""The publish manifest: parts as uploads land, the whole state at the end, killed runs folded in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from productgen.manifest import ManifestWriter, new_run_id, published_index, read_latest
from productgen.storage import open_store

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
    key = writer.finish(written, unfinished, {"model_version": "m1"})
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
