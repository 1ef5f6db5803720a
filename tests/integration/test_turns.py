"""One turn owns its thread: two messages never interleave their code in one kernel."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from tests.support.agent import chat, done
from tests.support.client import create_thread, run, stdout
from tests.support.poll import wait_until

pytestmark = pytest.mark.integration

# Long enough for the test to queue message B behind it, many times over.
SLOW_FIRST_BLOCK = """
import time
order = globals().setdefault("order", [])
time.sleep(5)
order.append("A1")
"""


def message(*blocks: str) -> str:
    return "\n".join(f"```python\n{b}\n```" for b in blocks)


def test_two_messages_with_several_blocks_run_one_after_the_other(api: Any) -> None:
    """Direct mode (no LLM): B is sent while A's first block runs, and must not run between
    A's blocks. Before the turn owner, B's first block ran right after A's first."""
    client = api()
    tid = create_thread(client, "turns")
    manager = client.runtime.manager
    results: dict[str, list[dict[str, Any]]] = {}

    def send(key: str, text: str) -> None:
        results[key] = chat(client, tid, text)

    first = threading.Thread(target=send, args=("a", message(SLOW_FIRST_BLOCK, "order.append('A2')")))
    first.start()
    assert wait_until(lambda: manager._locks.sandboxes.locked(tid), 60)  # A's first block runs
    second = threading.Thread(target=send, args=("b", message("order.append('B1')", "order.append('B2')")))
    second.start()
    assert wait_until(lambda: manager.turns_waiting(tid) == 1, 30)  # B is queued behind A
    for t in (first, second):
        t.join(timeout=120)
    assert done(results["a"])["status"] == "ok" and done(results["b"])["status"] == "ok", json.dumps(results)
    assert stdout(run(client, tid, "print(order)")) == "['A1', 'A2', 'B1', 'B2']\n"
    assert manager.turns_waiting(tid) == 0
