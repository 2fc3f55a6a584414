"""The render flow on Dask: a 2-worker LocalCluster publishes what one process does; a killed worker
loses and duplicates nothing."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster
from prefect.testing.utilities import prefect_test_harness

from flows.params import RenderParams
from flows.pipeline import render_flow, train_flow
from productgen.registry import promote
from productgen.runs import RunFolder, load_generator
from productgen.storage import ObjectStore, S3Settings, open_store

pytestmark = pytest.mark.slow  # a Prefect server and Dask worker processes

COLUMNS = ["sku", "variant", "key", "sha256", "bytes", "content_hash", "model_version", "seed"]


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def _with_promoted(run: Path, dest: str, s3: S3Settings, tmp: Path) -> ObjectStore:
    """A bucket whose promoted model is `run` (the gate's numbers are the registry tests' business)."""
    copy = tmp / f"run-{dest.split('/')[2]}"
    shutil.copytree(run, copy)
    (copy / "eval.json").write_text(json.dumps({"model_version": load_generator(copy).version, "gate": {}}))
    store = open_store(dest, s3, create_bucket=True)
    promote(copy, store, force=True)
    return store


def _images(store: ObjectStore) -> dict[str, str]:
    return {o.key: o.etag for o in store.list() if not o.key.startswith(("manifests/", "models/"))}


def _manifest(store: ObjectStore):
    latest = json.loads(store.get("manifests/latest"))
    frame = pq.read_table(io.BytesIO(store.get(latest["manifest"]))).to_pandas()
    return frame.sort_values("key").reset_index(drop=True)


def test_two_dask_workers_publish_what_one_process_publishes(
    harness, tiny_snapshot: Path, tiny_run: Path, s3_env: S3Settings, tmp_path: Path
) -> None:
    one = _with_promoted(tiny_run, "s3://dask-one/catalog", s3_env, tmp_path)
    two = _with_promoted(tiny_run, "s3://dask-two/catalog", s3_env, tmp_path)
    common = {"snapshot": str(tiny_snapshot), "workdir": str(tmp_path / "work"), "variants": 2}
    single = render_flow(RenderParams(dest="s3://dask-one/catalog", **common))
    sharded = render_flow(
        RenderParams(dest="s3://dask-two/catalog", task_runner="local:2", shards=5, **common)
    )
    assert single["published"] == sharded["published"] == sharded["images"] == 560

    keys = _images(one)
    assert keys.keys() == _images(two).keys() and len(keys) == 560
    assert all(one.get(k) == two.get(k) for k in keys)  # byte-identical objects
    assert _manifest(one)[COLUMNS].equals(_manifest(two)[COLUMNS])
    assert not [o.key for o in two.list("manifests/runs/") if "/part-" in o.key]  # shards' parts merged

    again = render_flow(RenderParams(dest="s3://dask-two/catalog", task_runner="local:2", shards=5, **common))
    assert again["published"] == 0 and again["unchanged"] == 560


def test_a_worker_killed_mid_shard_leaves_the_bucket_equal_to_the_manifest(
    harness, tiny_snapshot: Path, tiny_run: Path, s3_env: S3Settings, tmp_path: Path
) -> None:
    dest = "s3://dask-killed/catalog"
    store = _with_promoted(tiny_run, dest, s3_env, tmp_path)
    params = RenderParams(
        snapshot=str(tiny_snapshot), dest=dest, workdir=str(tmp_path / "work"), variants=16, shards=4,
    )  # fmt: skip
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        killed: list[int] = []

        def kill_a_worker_mid_shard() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(_images(store)) < 600:
                time.sleep(0.05)
            pid = next(iter(client.run(os.getpid).values()))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

        killer = threading.Thread(target=kill_a_worker_mid_shard, daemon=True)
        killer.start()
        at = params.model_copy(update={"task_runner": cluster.scheduler_address})
        state = render_flow(at, return_state=True)
        killer.join(timeout=150)
        assert killed, "no worker was killed"
        if not state.is_completed():  # Dask may re-run the lost shard itself; otherwise the flow is retried
            state = render_flow(at, return_state=True)
        assert state.is_completed(), state

    images, manifest = _images(store), _manifest(store)
    assert len(images) == len(manifest) == 280 * 16
    assert manifest["key"].is_unique and set(manifest["key"]) == set(images)
    assert (manifest["etag"] == manifest["key"].map(images)).all()  # each recorded object is the one there


def test_the_train_flow_runs_data_parallel_processes(harness, tiny_snapshot: Path, tmp_path: Path) -> None:
    run = train_flow(str(tiny_snapshot), str(tmp_path / "work"), "cpu-demo", 0.1, train_processes=2)
    meta = RunFolder(Path(run)).read_run()
    assert meta["processes"] == 2 and meta["step"] > 0
    assert load_generator(Path(run)).version
