"""The flows' task runner setting: none, a local Dask cluster, or a scheduler's address."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flows.params import NightlyParams, RenderParams
from flows.runners import shard_count, task_runner


def test_settings_name_a_runner_and_a_shard_count() -> None:
    assert task_runner("none") is None and shard_count("none") == 1
    local = task_runner("local:3")
    assert local.cluster_kwargs["n_workers"] == 3 and local.cluster_kwargs["threads_per_worker"] == 1
    assert shard_count("local:3") == 12 and shard_count("local") == 8 and shard_count("local", 5) == 5
    # no shard smaller than MIN_SHARD_ROWS rows, unless asked for
    assert shard_count("local:3", rows=12_000) == 2 and shard_count("local", rows=10) == 1
    assert shard_count("local:3", rows=10_000_000) == 12 and shard_count("local", 6, rows=10) == 6
    remote = task_runner("tcp://dask-scheduler.productgen.svc:8786")
    assert remote.address == "tcp://dask-scheduler.productgen.svc:8786"
    assert shard_count("tls://10.0.0.1:8786") == 64


@pytest.mark.parametrize("bad", ["dask", "local:0", "local:x", "http://x:8786", "tcp://a b", "local:5000"])
def test_a_bad_setting_is_one_clear_error_in_the_library_and_the_form(bad: str) -> None:
    with pytest.raises(ValueError, match="use 'none', 'local', 'local:N'"):
        task_runner(bad)
    with pytest.raises(ValidationError, match="task_runner"):
        RenderParams(snapshot="s", dest="file:///x", task_runner=bad)
    with pytest.raises(ValidationError, match="task_runner"):
        NightlyParams(catalog="c.csv", dest="file:///x", task_runner=bad)
