"""Render + publish: same bytes per SKU and model, incremental, exactly once across a killed server."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from productgen.catalog.ingest import ingest
from productgen.devs3 import start_local_s3
from productgen.manifest import read_latest
from productgen.publish import PublishConfig, publish
from productgen.render import RenderConfig, RenderPipeline
from productgen.storage import S3Settings, StorageError, open_store, s3_client
from productgen.text import EncodeConfig, encode_snapshot


def _manifest(store) -> pd.DataFrame:
    latest = read_latest(store)
    return pq.read_table(io.BytesIO(store.get(latest["manifest"]))).to_pandas()


def _image_keys(store) -> set[str]:
    return {o.key for o in store.list() if not o.key.startswith("manifests/")}


def test_same_sku_and_model_give_the_same_bytes(tiny_snapshot: Path, tiny_run: Path, tmp_path: Path) -> None:
    """A full render and a render of a few rows (other batch mates) write byte-identical files."""
    trained = RenderPipeline.from_run(tiny_run)
    full = open_store(str(tmp_path / "full"))
    publish(tiny_snapshot, trained, full, PublishConfig(render=RenderConfig(batch_size=64)))
    again = open_store(str(tmp_path / "again"))
    publish(tiny_snapshot, trained, again, PublishConfig(render=RenderConfig(batch_size=7)))
    keys = _image_keys(full)
    assert keys == _image_keys(again) and len(keys) == 280
    assert all(full.get(k) == again.get(k) for k in keys)
    # the images differ between SKUs, decode, and the manifest's hashes are the bytes' hashes
    manifest = _manifest(full)
    assert manifest["sha256"].nunique() == 280
    for row in manifest.head(20).itertuples():
        body = full.get(row.key)
        assert hashlib.sha256(body).hexdigest() == row.sha256 and len(body) == row.bytes
        assert Image.open(io.BytesIO(body)).size == (32, 32)


def test_variants_sizes_and_formats(tiny_snapshot: Path, tiny_run: Path, tmp_path: Path) -> None:
    trained = RenderPipeline.from_run(tiny_run)
    store = open_store(str(tmp_path / "webp"))
    render = RenderConfig(variants=2, image_format="webp", size=96)
    summary = publish(tiny_snapshot, trained, store, PublishConfig(render=render))
    assert summary.images == summary.published == 560
    sku = _manifest(store)["sku"].iloc[0]
    first = store.get(f"{trained.version}/{sku}.webp")
    second = store.get(f"{trained.version}/{sku}-v1.webp")
    assert first != second
    image = Image.open(io.BytesIO(first))
    assert (image.format, image.size) == ("WEBP", (96, 96))
    assert store.head(f"{trained.version}/{sku}.webp").content_type == "image/webp"


def test_a_new_truncation_re_renders_every_row_once(
    tiny_snapshot: Path, tiny_run: Path, tmp_path: Path
) -> None:
    """psi is part of what an image is made from: changing it republishes every row with new
    pixels, the same psi again publishes nothing; psi 1 keeps the hashes of earlier manifests."""
    trained = RenderPipeline.from_run(tiny_run)
    store = open_store(str(tmp_path / "psi"))

    def run(psi: float):
        return publish(tiny_snapshot, trained, store, PublishConfig(render=RenderConfig(truncation=psi)))

    assert run(1.0).published == 280
    key = _manifest(store)["key"].iloc[0]
    before = store.get(key)
    assert run(0.5).published == 280 and store.get(key) != before
    assert run(0.5).unchanged == 280
    assert run(1.0).published == 280 and store.get(key) == before
    with pytest.raises(ValueError, match="truncation must be from 0 to 1"):
        RenderConfig(truncation=1.5)


def _changed_snapshot(tiny_snapshot: Path, tmp_path: Path, text_encoder, skus: list[str]) -> Path:
    """The tiny catalog with new titles for `skus`, ingested and encoded again."""
    summary = json.loads((tiny_snapshot / "summary.json").read_text())
    catalog = pd.read_parquet(summary["source"])
    changed = catalog["sku"].isin(skus)
    catalog.loc[changed, "title"] = catalog.loc[changed, "title"] + " (new season)"
    path = Path(summary["image_root"]) / "changed.parquet"
    catalog.to_parquet(path)
    ingest(path, tmp_path / "snap2")
    encode_snapshot(tmp_path / "snap2", tmp_path / "cache", EncodeConfig(), encoder=text_encoder)
    return tmp_path / "snap2"


def test_second_run_publishes_only_changed_rows(
    tiny_snapshot: Path, tiny_run: Path, tmp_path: Path, s3_env: S3Settings, text_encoder
) -> None:
    trained = RenderPipeline.from_run(tiny_run)
    store = open_store("s3://incremental/catalog", s3_env, create_bucket=True)
    first = publish(tiny_snapshot, trained, store)
    assert (first.published, first.unchanged, first.recovered) == (280, 0, 0)
    unchanged = publish(tiny_snapshot, trained, store)
    assert (unchanged.published, unchanged.unchanged) == (0, 280)

    skus = _manifest(store)["sku"].iloc[:3].tolist()
    before = {k: store.head(k).etag for k in _image_keys(store)}
    second = publish(_changed_snapshot(tiny_snapshot, tmp_path, text_encoder, skus), trained, store)
    assert (second.published, second.unchanged) == (3, 277)
    after = {k: store.head(k).etag for k in _image_keys(store)}
    assert sorted(k for k in after if after[k] != before[k]) == sorted(
        f"{trained.version}/{s}.png" for s in skus
    )
    manifest = _manifest(store)
    assert len(manifest) == 280 and set(manifest["key"]) == set(after)


def test_only_missing_renders_rows_without_a_catalog_image(
    tiny_snapshot: Path, tiny_run: Path, tmp_path: Path
) -> None:
    snap = tmp_path / "snap"
    subprocess.run(["cp", "-r", str(tiny_snapshot), str(snap)], check=True)
    rows = pd.read_parquet(snap / "valid.parquet")
    rows.loc[rows.index[:5], "image"] = None
    rows.to_parquet(snap / "valid.parquet")
    store = open_store(str(tmp_path / "out"))
    config = PublishConfig(only_missing=True)
    summary = publish(snap, RenderPipeline.from_run(tiny_run), store, config)
    assert summary.published == 5
    assert {k.rsplit("/", 1)[1] for k in _image_keys(store)} == {f"{s}.png" for s in rows["sku"][:5]}


def test_killed_server_then_rerun_is_complete_with_no_duplicates(
    tiny_snapshot: Path, tiny_run: Path, s3_env: S3Settings
) -> None:
    """Stop the S3 server mid-run, start it again, run again: every object once, manifest == bucket."""
    server = start_local_s3()
    settings = S3Settings(endpoint_url=server.url, max_attempts=2)
    store = open_store("s3://killed/renders", settings, create_bucket=True)
    s3_client(settings).put_bucket_versioning(Bucket="killed", VersioningConfiguration={"Status": "Enabled"})
    trained = RenderPipeline.from_run(tiny_run)
    config = PublishConfig(render=RenderConfig(batch_size=32), upload_workers=4, max_in_flight=32,
                           manifest_chunk=40)  # fmt: skip

    def kill_after_three_batches(progress) -> None:
        if progress.done >= 96 and server.server._server_ready_event.is_set():
            server.stop()

    with pytest.raises(StorageError, match=f"cannot reach the S3 endpoint {server.url}"):
        publish(tiny_snapshot, trained, store, config, on_progress=kill_after_three_batches)
    port = int(server.url.rsplit(":", 1)[1])
    server = start_local_s3(port)  # moto keeps its buckets in this process: the data survived
    try:
        summary = publish(tiny_snapshot, trained, open_store("s3://killed/renders", settings), config)
        assert summary.images == 280 and summary.published + summary.recovered + summary.unchanged == 280
        assert summary.published < 280  # the first run's work was kept
        versions = s3_client(settings).list_object_versions(Bucket="killed", Prefix="renders/")
        writes = pd.Series([v["Key"] for v in versions["Versions"] if "/manifests/" not in v["Key"]])
        assert len(writes) == 280 and writes.is_unique  # 0 duplicates, 0 missing
        manifest = _manifest(store)
        assert set("renders/" + manifest["key"]) == set(writes)
        assert not [o for o in store.list("manifests/runs/") if "/part-" in o.key]  # parts folded in
    finally:
        server.stop()


@pytest.mark.slow
def test_cli_renders_and_reports_bad_input_in_one_line(
    tiny_snapshot: Path, tiny_run: Path, tmp_path: Path, s3_env: S3Settings
) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "productgen", *args], capture_output=True, text=True)

    base = ["render", str(tiny_snapshot), "--model", str(tiny_run)]
    done = cli(*base, "--dest", "s3://cli-bucket/p", "--create-bucket", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["published"] == 280

    missing_bucket = cli(*base, "--dest", "s3://no-such-bucket/p")
    not_a_run = cli("render", str(tiny_snapshot), "--model", str(tmp_path), "--dest", str(tmp_path / "o"))
    empty = tmp_path / "empty"
    subprocess.run(["cp", "-r", str(tiny_snapshot), str(empty)], check=True)
    pd.read_parquet(empty / "valid.parquet").iloc[:0].to_parquet(empty / "valid.parquet")
    no_rows = cli("render", str(empty), "--model", str(tiny_run), "--dest", str(tmp_path / "o"))
    bad_format = cli(*base, "--dest", str(tmp_path / "o"), "--format", "gif")
    for result, expected in [
        (missing_bucket, "the bucket does not exist"),
        (not_a_run, "not a training run"),
        (no_rows, "no valid rows"),
        (bad_format, "format 'gif' is not supported"),
    ]:
        assert result.returncode == 2 and expected in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_two_renders_to_one_prefix_at_once_lose_nothing(
    tiny_snapshot: Path, tiny_run: Path, text_encoder, tmp_path: Path, s3_env: S3Settings
) -> None:
    """The fault probe's case: disjoint halves rendered at the same time into one prefix; every
    object in the bucket is in the manifest and the manifest names nothing else."""
    from productgen.snapshot import Snapshot

    rows = Snapshot(tiny_snapshot).read_rows()
    root = str(Snapshot(tiny_snapshot).image_root())
    halves = []
    for name, part in (("a", rows.iloc[::2]), ("b", rows.iloc[1::2])):
        part.drop(columns=["content_hash", "source_row"]).to_parquet(tmp_path / f"{name}.parquet")
        ingest(tmp_path / f"{name}.parquet", tmp_path / name, image_root=root)
        encode_snapshot(tmp_path / name, tmp_path / "cache", EncodeConfig(), encoder=text_encoder)
        halves.append(tmp_path / name)
    dest = "s3://race-bucket/p"
    store = open_store(dest, s3_env, create_bucket=True)
    command = [sys.executable, "-m", "productgen", "render", "--model", str(tiny_run), "--dest", dest]
    renders = [
        subprocess.Popen([*command, str(half)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for half in halves
    ]
    outcomes = [r.communicate(timeout=300) for r in renders]
    assert [r.returncode for r in renders] == [0, 0], [stderr for _, stderr in outcomes]
    manifest = _manifest(store)
    assert set(manifest["key"]) == _image_keys(store) and len(manifest) == len(rows) == 280
    assert not [o.key for o in store.list("manifests/runs/") if "/part-" in o.key]  # parts folded in
