"""Helpers for tests and benchmarks that load a controller running in a subprocess (devkit/procserver.py).

``HealthPoller`` asks ``/healthz`` on a fixed period from a process of its own and keeps the
worst latency, so a test can assert the event loop answered throughout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx

from devkit.client import stream_events

POLL_PERIOD = 0.15
# A request that takes this long counts as "no answer"; the worst latency records it.
POLL_TIMEOUT = 10.0


# The poller runs in a process of its own: in the test process, two dozen client threads
# parsing streams held the GIL long enough to add a second to what it measured.
POLLER = """
import json, sys, threading, time, urllib.request
url, period, timeout = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
worst, count, failures = 0.0, 0, []
while not done.wait(period):  # the poll period, not a synchronisation
    started = time.monotonic()
    try:
        urllib.request.urlopen(url, timeout=timeout).read()
    except Exception as exc:
        failures.append(repr(exc))
    worst, count = max(worst, time.monotonic() - started), count + 1
print(json.dumps({"worst": worst, "count": count, "failures": failures}))
"""


class HealthPoller:
    """Asks ``/healthz`` every POLL_PERIOD from a separate process; ``worst``, ``count`` and
    ``failures`` are known once the ``with`` block ends."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.worst = 0.0
        self.count = 0
        self.failures: list[str] = []
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> HealthPoller:
        argv = [sys.executable, "-c", POLLER, f"{self.url}/healthz", str(POLL_PERIOD), str(POLL_TIMEOUT)]
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._proc is not None
        out = self._proc.communicate(input="", timeout=POLL_TIMEOUT + 10)[0]  # EOF stops it
        result = json.loads(out)
        self.worst, self.count, self.failures = result["worst"], result["count"], result["failures"]


def stream(client: httpx.Client, thread_id: str, code: str) -> list[dict[str, Any]]:
    """Every event of one execute turn, read line by line (memory stays small for huge streams)."""
    with client.stream("POST", f"/threads/{thread_id}/execute", json={"code": code}) as resp:
        resp.raise_for_status()
        return stream_events(resp.iter_lines())
