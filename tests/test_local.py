"""`make serve` / `make stop` helpers: a server that exited but was never reaped counts as stopped."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from flows.local import running, stop


def _zombie() -> subprocess.Popen:
    """A child that exited and that this process has not reaped yet."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while running(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return child


def test_a_zombie_is_not_running_and_stop_goes_on(tmp_path: Path) -> None:
    child = _zombie()
    try:
        assert not running(child.pid)
        (tmp_path / "prefect-server.pid").write_text(str(child.pid))
        started = time.monotonic()
        stop(tmp_path)
        assert time.monotonic() - started < 5
        assert not (tmp_path / "prefect-server.pid").exists()
    finally:
        child.wait()


def test_a_live_process_is_running() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert running(child.pid)
    finally:
        child.kill()
        child.wait()
