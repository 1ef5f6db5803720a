"""Load on a controller in a subprocess: many threads, more than the sandbox cap, many turns.

Each turn prints a unique token. Every turn's stream must hold exactly its own token once and
end with one ``done`` (nothing mixed, lost or duplicated), and ``/healthz`` must answer within
a second the whole time (the event loop never blocks, whatever the kernels do).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pytest

from devkit.client import api_client
from devkit.load import HealthPoller, stream
from devkit.procserver import controller_env, running_controller
from tests.support.client import create_thread

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

MAX_SANDBOXES = 20
CLIENTS = 24  # more clients than sandboxes, so turns queue and idle sandboxes are evicted
RUN_TIMEOUT = 1800.0  # 200 x 2 took 62 s here, and 17 min while other suites loaded the 2 cores
TOKEN = "tok-{thread}-{turn}-x"


def check_turn(events: list[dict[str, Any]], token: str) -> list[str]:
    """What is wrong with one turn's stream, as sentences (empty: nothing)."""
    problems = []
    out = "".join(e["text"] for e in events if e["type"] in ("stdout", "stderr"))
    if out != token + "\n":
        errors = [f"{e['ename']}: {e['evalue'][:200]}" for e in events if e["type"] == "error"]
        problems.append(f"{token}: output {out[:200]!r}, errors {errors}")
    dones = [i for i, e in enumerate(events) if e["type"] == "done"]
    if dones != [len(events) - 1] or events[-1]["status"] != "ok":
        problems.append(f"{token}: done events at {dones} of {len(events)}, last {events[-1]}")
    return problems


def thread_turns(url: str, index: int, turns: int) -> list[str]:
    with api_client(url) as client:
        thread_id = create_thread(client, f"load-{index}")
        problems = []
        for turn in range(turns):
            token = TOKEN.format(thread=index, turn=turn)
            problems += check_turn(stream(client, thread_id, f"print({token!r})"), token)
        return problems


@pytest.mark.parametrize(("threads", "turns"), [(50, 5), (200, 2)])
def test_many_threads_never_hang_nor_mix(
    tmp_path: Path, sandbox_python: Path, threads: int, turns: int
) -> None:
    env = controller_env(tmp_path / "data", sandbox_python, max_sandboxes=MAX_SANDBOXES, exec_timeout=120)
    with running_controller(env, tmp_path / "controller.log") as ctl, HealthPoller(ctl.url) as poller:
        started = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(thread_turns, ctl.url, i, turns) for i in range(threads)]
            _, pending = wait(futures, timeout=RUN_TIMEOUT)
            assert not pending, f"{len(pending)} threads still running after {RUN_TIMEOUT:g}s"
            problems = [p for f in futures for p in f.result()]
        took = time.monotonic() - started
    print(
        f"{threads} threads x {turns} turns: {took:.0f}s; /healthz worst {poller.worst:.3f}s over {poller.count} polls"
    )
    assert problems == []
    assert poller.failures == []
    assert poller.count >= took / 0.5, "the poller did not run throughout"
    assert poller.worst < 1.0
