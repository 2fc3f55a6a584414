"""The Prefect UI: a real `prefect server start`, the served deployments, headless Chromium starts a run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from flows.local import prefect_api_healthy
from flows.serve import NIGHTLY
from productgen.devs3 import free_port
from productgen.storage import S3Settings, open_store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make setup installs it)"),
    pytest.mark.slow,  # a Prefect server and a browser: a minute, not seconds
]
SCREENSHOTS = Path(__file__).parent.parent / "build" / "screenshots"


def _api(api: str, path: str, body: dict | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{api}{path}", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _wait(condition, timeout: float, what: str, processes=()) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        for p in processes:
            assert p.poll() is None, f"{p.args[:3]} exited while waiting for {what}"
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def prefect_server(tmp_path: Path):
    """`prefect server start` on a free port with its own home (database); yields the API URL."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
    }
    prefect = str(Path(sys.executable).with_name("prefect"))
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        _wait(lambda: prefect_api_healthy(env["PREFECT_API_URL"]), 180, "the Prefect server", [server])
        yield env
    finally:
        server.terminate()
        server.wait(30)


def test_start_the_nightly_deployment_from_the_ui(
    prefect_server: dict, small_demo, s3_env: S3Settings, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    api = prefect_server["PREFECT_API_URL"]
    env = {**prefect_server, **{k: os.environ[k] for k in os.environ if k.startswith("AWS_")},
           "PRODUCTGEN_CATALOG": str(small_demo.catalog_parquet), "PRODUCTGEN_DEST": "s3://ui-test/catalog",
           "PRODUCTGEN_WORKDIR": str(tmp_path / "work"), "PRODUCTGEN_MAX_MINUTES": "0.05"}  # fmt: skip
    log = (tmp_path / "serve.log").open("wb")
    serving = subprocess.Popen([sys.executable, "-m", "flows.serve"], env=env, stdout=log, stderr=log,
                               cwd=Path(__file__).parent.parent)  # fmt: skip
    try:
        named = {"deployments": {"name": {"any_": [NIGHTLY]}}}
        deployment = _wait(
            lambda: next(iter(_api(api, "/deployments/filter", named)), None),
            120,
            "the served deployment",
            [serving],
        )
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{api.removesuffix('/api')}/deployments/deployment/{deployment['id']}")
            page.get_by_text(NIGHTLY).first.wait_for(timeout=60_000)
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text("Quick run").first.click()
            # the typed form of NightlyParams, filled with the deployment's defaults
            dialog = page.get_by_role("dialog")
            dialog.get_by_text("Retrain (Optional)").wait_for(timeout=30_000)
            page.screenshot(path=str(SCREENSHOTS / "ui-run-form.png"))
            dialog.get_by_role("button", name="Run", exact=True).click()

            def finished() -> dict | None:
                runs = _api(api, "/flow_runs/filter", {"deployments": {"id": {"any_": [deployment["id"]]}}})
                done = [r for r in runs if r["state_type"] in {"COMPLETED", "FAILED", "CRASHED"}]
                return done[0] if done else None

            run = _wait(finished, 600, "the flow run started from the UI", [serving])
            assert run["state_type"] == "COMPLETED", run["state_name"]
            page.goto(f"{api.removesuffix('/api')}/runs/flow-run/{run['id']}")
            page.get_by_text("Completed").first.wait_for(timeout=60_000)
            page.get_by_text("Artifacts", exact=True).first.click()
            page.get_by_text("nightly-summary").first.wait_for(timeout=60_000)
            page.screenshot(path=str(SCREENSHOTS / "ui-flow-run.png"))
            page.get_by_text("nightly-summary").first.click()
            page.get_by_text("Nightly catalog render:").first.wait_for(timeout=60_000)
            page.screenshot(path=str(SCREENSHOTS / "ui-summary-artifact.png"), full_page=True)
            browser.close()
        store = open_store("s3://ui-test/catalog", s3_env)
        assert (
            len(
                [
                    o
                    for o in store.list()
                    if o.key.endswith(".png") and "/" in o.key and "models/" not in o.key
                ]
            )
            == 700
        )
    finally:
        serving.terminate()
        serving.wait(30)
