"""Helpers for tests that load a controller running in a subprocess (tests/support/procserver.py).

``HealthPoller`` asks ``/healthz`` on a fixed period from a thread of its own and keeps the
worst latency, so a test can assert the event loop answered throughout. ``controller_env``
is the environment of a local-backend controller with its data under a test's directory.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.client import ADMIN_TOKEN, bearer
from tests.support.server import free_port

POLL_PERIOD = 0.15
# A request that takes this long counts as "no answer"; the worst latency records it.
POLL_TIMEOUT = 10.0


class HealthPoller:
    def __init__(self, url: str) -> None:
        self.url = url
        self.worst = 0.0
        self.count = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthz-poller", daemon=True)

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=POLL_TIMEOUT + 5)
        assert not self._thread.is_alive(), "the /healthz poller did not stop"

    def _run(self) -> None:
        with httpx.Client(timeout=POLL_TIMEOUT) as client:
            while not self._stop.wait(POLL_PERIOD):  # the poll period, not a synchronisation
                started = time.monotonic()
                try:
                    client.get(f"{self.url}/healthz").raise_for_status()
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.worst = max(self.worst, time.monotonic() - started)
                self.count += 1


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


def api_client(url: str) -> httpx.Client:
    """An admin client of the controller, patient enough for long turns."""
    return httpx.Client(base_url=url, headers=bearer(ADMIN_TOKEN), timeout=httpx.Timeout(10, read=300))


def stream(client: httpx.Client, thread_id: str, code: str) -> list[dict[str, Any]]:
    """Every event of one execute turn, read line by line (memory stays small for huge streams)."""
    with client.stream("POST", f"/threads/{thread_id}/execute", json={"code": code}) as resp:
        resp.raise_for_status()
        return [json.loads(line) for line in resp.iter_lines() if line]
