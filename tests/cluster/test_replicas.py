"""Two controller replicas in front of one cluster: turns of one thread never overlap."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from controller.k8s.lease import WAIT_MESSAGE
from tests.cluster.conftest import Cluster
from tests.support.agent import chat
from tests.support.client import create_thread, run, stdout

pytestmark = pytest.mark.cluster

# A turn in two pieces: /execute runs them as one block, /messages (direct mode) as two
# blocks, which the thread's Lease must cover together.
START = "import time\nopen('log.txt', 'a').write('start {who}\\n')\ntime.sleep(3)"
END = "open('log.txt', 'a').write('end {who}\\n')"


def _turn(client: Any, tid: str, who: str, via: str) -> list[dict[str, Any]]:
    start, end = START.format(who=who), END.format(who=who)
    if via == "execute":
        return run(client, tid, f"{start}\n{end}")
    return chat(client, tid, f"```python\n{start}\n```\n```python\n{end}\n```")


@pytest.mark.parametrize("via", ["execute", "messages"])
def test_two_replicas_take_turns_on_one_new_thread(
    cluster: Cluster, k8s_api: Any, tmp_path: Path, via: str
) -> None:
    replicas = {who: k8s_api(data_dir=tmp_path / who) for who in ("a", "b")}
    tid = create_thread(replicas["a"], "shared")

    with ThreadPoolExecutor(2) as pool:
        turns = {who: pool.submit(_turn, c, tid, who, via) for who, c in replicas.items()}
        events = {who: turn.result() for who, turn in turns.items()}

    log = stdout(run(replicas["a"], tid, "print(open('log.txt').read(), end='')")).splitlines()
    first, second = log[0].split()[1], log[2].split()[1]
    assert log == [f"start {first}", f"end {first}", f"start {second}", f"end {second}"]
    waited = [e["message"] for e in events[second] if e["type"] == "status" and e.get("phase") == "queued"]
    assert waited == [WAIT_MESSAGE]
    assert len(cluster.pods(tid)) == 1  # the second replica adopted the first one's pod
