"""infra/: prefect.yaml holds the deployments flows/serve.py serves; docker-compose wires the worker."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import yaml

from flows.runners import task_runner
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


def test_the_kubernetes_job_template_and_the_dask_cluster_fit_together() -> None:
    template = json.loads((INFRA / "k8s" / "work-pool-job-template.json").read_text())
    variables = template["variables"]["properties"]
    used = set(re.findall(r"{{\s*(\w+)\s*}}", json.dumps(template["job_configuration"])))
    assert used == set(variables), used ^ set(variables)  # every placeholder defined, every variable used
    job = template["job_configuration"]["job_manifest"]
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "{{ image }}" and container["args"] == "{{ command }}"

    documents = [d for d in yaml.safe_load_all((INFRA / "k8s" / "dask-cluster.yaml").read_text()) if d]
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in documents}
    scheduler, worker = kinds[("Deployment", "dask-scheduler")], kinds[("Deployment", "dask-worker")]
    service = kinds[("Service", "dask-scheduler")]
    assert service["spec"]["selector"] == scheduler["spec"]["template"]["metadata"]["labels"]
    assert 8786 in {p["port"] for p in service["spec"]["ports"]}
    (worker_container,) = worker["spec"]["template"]["spec"]["containers"]
    args = worker_container["args"]
    assert args[:3] == ["dask", "worker", "tcp://dask-scheduler:8786"]
    assert args[args.index("--nthreads") + 1] == "1"  # the generator's one thread (productgen.render)
    # the same image and the same shared work folder as the flow-run Jobs
    assert worker_container["image"] == variables["image"]["default"]
    claim = kinds[("PersistentVolumeClaim", "productgen-work")]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    assert claim["metadata"]["name"] == variables["work_claim"]["default"]
    (mount,) = worker_container["volumeMounts"]
    (job_mount,) = container["volumeMounts"]
    assert mount["mountPath"] == job_mount["mountPath"] == "/opt/productgen/build"
    assert (
        worker["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
        == claim["metadata"]["name"]
    )
    # the address the README tells the flows to use is one the task_runner setting accepts
    task_runner("tcp://dask-scheduler.productgen.svc:8786")
