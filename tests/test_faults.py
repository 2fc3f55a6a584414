"""The fault suite: real processes, a real S3 protocol server, a fault-injecting proxy between them."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from productgen.disks3 import DiskS3
from productgen.manifest import read_latest
from productgen.publish import PublishConfig, publish
from productgen.render import RenderPipeline
from productgen.storage import S3Settings, open_store
from tests.faultproxy import FaultProxy


def _manifest_keys(store) -> set[str]:
    latest = read_latest(store)
    return set(pq.read_table(io.BytesIO(store.get(latest["manifest"]))).column("key").to_pylist())


@pytest.fixture(params=["moto", "disk"])
def s3_server(request: pytest.FixtureRequest, s3_endpoint: str, s3_env: S3Settings, tmp_path: Path):
    """The endpoint of a real S3 protocol server: moto's, or the laptop's disk-backed one."""
    if request.param == "moto":
        yield s3_endpoint
        return
    server = DiskS3(tmp_path / "s3-data").start()
    yield server.url
    server.stop()


@pytest.mark.slow
def test_a_flaky_store_gets_every_image_once_and_the_summary_counts_the_retries(
    tiny_snapshot: Path, tiny_run: Path, s3_server: str, s3_env: S3Settings
) -> None:
    """10% of requests refused, 15% answered by the server but the answer lost: every image lands,
    the server accepts one write per image (a retry that finds its own image adopts it), and the
    bucket equals the manifest."""
    direct = open_store("s3://flaky-bucket/p", S3Settings(endpoint_url=s3_server), create_bucket=True)
    with FaultProxy(s3_server, refuse=0.10, drop=0.15, seed=1) as proxy:
        flaky = open_store("s3://flaky-bucket/p", S3Settings(endpoint_url=proxy.url, max_attempts=12))
        summary = publish(tiny_snapshot, RenderPipeline.from_run(tiny_run), flaky, PublishConfig())
    images = {o.key for o in direct.list() if not o.key.startswith("manifests/")}
    assert summary.published == 280 and images == _manifest_keys(direct) and len(images) == 280
    puts = [(path, status, what) for method, path, status, what in proxy.log if method == "PUT"]
    accepted = Counter(path for path, status, _ in puts if status == 200 and "/manifests/" not in path)
    assert len(accepted) == 280 and set(accepted.values()) == {1}  # never a second write of an image
    lost = sum(
        1 for path, status, what in puts if what == "dropped" and status == 200 and "/manifests/" not in path
    )
    refused = sum(1 for _, _, what in puts if what == "refused")
    assert lost > 0 and refused > 0
    troubled = {path for path, _, what in puts if what != "answered" and "/manifests/" not in path}
    assert summary.adopted_writes == lost and summary.retried_writes >= len(troubled)
