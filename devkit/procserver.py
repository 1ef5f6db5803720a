"""The controller in a subprocess of its own, for tests and benchmarks that measure its memory or kill it.

``running_controller(env)`` starts ``threadbox serve`` with the given ``THREADBOX_*``
environment on a free port, waits until ``/healthz`` answers, and yields a handle
with the base URLs and the pid. The process is stopped (SIGTERM, then SIGKILL) on exit.
``controller_env`` is the environment of a local-backend controller with its data in a
given directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devkit.client import ADMIN_TOKEN
from devkit.ports import free_port
from devkit.ready import wait_answering

START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Controller:
    url: str
    pid: int
    log: Path
    chat_url: str  # the chat webhooks' server (/slack/events), on a port of its own

    def rss_bytes(self) -> int:
        return _status_kib(self.pid, "VmRSS") * 1024

    def peak_rss_bytes(self) -> int:
        """The high-water mark of resident memory since start (VmHWM)."""
        return _status_kib(self.pid, "VmHWM") * 1024


def controller_env(data_dir: Path, sandbox_python: Path, **settings: Any) -> dict[str, str]:
    env = {
        "THREADBOX_DATA_DIR": str(data_dir),
        "THREADBOX_SANDBOX_PYTHON": str(sandbox_python),
        "THREADBOX_BACKEND": "local",
        "THREADBOX_STORE": "local",
        "THREADBOX_CHAT_PORT": str(free_port()),
        "THREADBOX_ADMIN_TOKEN": ADMIN_TOKEN,
        # A hang can then be diagnosed from outside: SIGABRT dumps every thread's stack to the log.
        "PYTHONFAULTHANDLER": "1",
    }
    env.update({f"THREADBOX_{key.upper()}": str(value) for key, value in settings.items()})
    return env


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/status")


@contextmanager
def running_controller(env: dict[str, str], log: Path, command: str = "serve") -> Iterator[Controller]:
    port, chat_port = free_port(), free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("THREADBOX_")}
    full.update(env)
    full.update(THREADBOX_HOST="127.0.0.1", THREADBOX_PORT=str(port), THREADBOX_CHAT_PORT=str(chat_port))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", command],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering("the controller", f"{url}/healthz", proc, log, START_TIMEOUT)
        yield Controller(url, proc.pid, log, f"http://127.0.0.1:{chat_port}")
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                break
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                continue
