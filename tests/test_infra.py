"""infra/: prefect.yaml holds the deployments flows/serve.py serves; docker-compose wires the worker."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

from flows.serve import NIGHTLY, ServeSettings, deployments

INFRA = Path(__file__).parent.parent / "infra"


def test_prefect_yaml_matches_the_served_deployments() -> None:
    config = yaml.safe_load((INFRA / "prefect.yaml").read_text())
    in_yaml = {d["name"]: d for d in config["deployments"]}
    served = {d.name: d for d in deployments(ServeSettings())}
    assert set(in_yaml) == set(served)
    for name, spec in in_yaml.items():
        path, function = spec["entrypoint"].split(":")
        module = path.removesuffix(".py").replace("/", ".")
        flow = getattr(importlib.import_module(module), function)
        assert flow.name == served[name].flow_name, name
    nightly = in_yaml[NIGHTLY]
    (schedule,) = nightly["schedules"]
    assert (schedule["cron"], schedule["timezone"]) == ("0 2 * * *", "UTC")
    assert nightly["concurrency_limit"] == 1
    assert set(nightly["parameters"]["params"]) <= set(ServeSettings.model_fields) | {
        "preset", "retrain", "only_missing"
    }  # fmt: skip


def test_compose_runs_minio_prefect_on_postgres_and_a_worker() -> None:
    compose = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"minio", "postgres", "prefect-server", "worker"} <= set(services)
    assert (
        "postgresql+asyncpg://"
        in services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    )
    worker_env = services["worker"]["environment"]
    assert worker_env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert worker_env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert "prefect --no-prompt deploy --all" in services["worker"]["command"]
