"""Local services for a laptop: the S3 server and the Prefect server, started once and reused.

    python -m flows.local serve     local S3 + `prefect server start` (127.0.0.1:4200) + the deployments
    python -m flows.local stop      stop what `serve` or `make demo` started in the background

Background services write their pid and log into the build folder.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from productgen.devs3 import DEV_CREDENTIALS


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _start(
    name: str, command: list[str], build: Path, ready, env: dict | None = None, timeout: float = 600
) -> None:
    """Start `command` detached (log and pid in build/), wait until ready() or fail with the log's path."""
    build.mkdir(parents=True, exist_ok=True)
    log = build / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    (build / f"{name}.pid").write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{name} did not start; see {log}")
        time.sleep(0.5)


def ensure_local_s3(port: int, build: Path) -> dict[str, str]:
    """The AWS_* variables of the local S3 server; started (its buckets in build/s3-data) unless running."""
    url = f"http://127.0.0.1:{port}"
    if not listening(port):
        data = build / "s3-data"
        command = [sys.executable, "-m", "productgen", "dev", "s3", "--port", str(port), "--data", str(data)]

        def ready() -> bool:
            return listening(port) and b"local S3 server on" in (build / "s3.log").read_bytes()[-4096:]

        _start("s3", command, build, ready)
        print(
            f"started the local S3 server on {url} (data {build / 's3-data'}, log {build / 's3.log'}; "
            "`make stop` stops it)"
        )
    return {"AWS_ENDPOINT_URL": url, "AWS_DEFAULT_REGION": "us-east-1", **DEV_CREDENTIALS}


def prefect_api_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def ensure_prefect_server(port: int, build: Path) -> str:
    """PREFECT_API_URL of `prefect server start` on 127.0.0.1:port; started unless running."""
    api = f"http://127.0.0.1:{port}/api"
    if not prefect_api_healthy(api):
        prefect = str(Path(sys.executable).with_name("prefect"))
        command = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        _start("prefect-server", command, build, lambda: prefect_api_healthy(api))
        print(
            f"started the Prefect server: UI on http://127.0.0.1:{port} (log {build / 'prefect-server.log'})"
        )
    return api


def running(pid: int) -> bool:
    """Is `pid` alive? A zombie (exited, not yet reaped by its parent) is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: the state is the field after the parenthesised command name
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def stop(build: Path) -> None:
    """SIGTERM what was started in the background (the S3 server's data is already on disk)."""
    for name in ("prefect-server", "s3"):
        pid_file = build / f"{name}.pid"
        if pid_file.is_file():
            pid = int(pid_file.read_text())
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            for _ in range(120):
                if not running(pid):
                    break
                time.sleep(0.5)
            pid_file.unlink()
            print(f"stopped {name}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["serve", "stop"])
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--s3-port", type=int, default=9000)
    parser.add_argument("--ui-port", type=int, default=4200)
    args = parser.parse_args()
    if args.action == "stop":
        stop(args.build)
        return
    os.environ.update(ensure_local_s3(args.s3_port, args.build))
    os.environ["PREFECT_API_URL"] = ensure_prefect_server(args.ui_port, args.build)
    from flows.serve import main as serve

    print(f"serving deployments: open http://127.0.0.1:{args.ui_port}/deployments, run one (Ctrl-C stops)")
    serve()


if __name__ == "__main__":
    main()
