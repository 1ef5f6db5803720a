"""Two controller replicas in front of one cluster: turns of one thread never overlap."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from controller.k8s.lease import WAIT_MESSAGE
from tests.cluster.conftest import Cluster
from tests.support.client import create_thread, run, stdout

pytestmark = pytest.mark.cluster

TURN = (
    "import time\n"
    "open('log.txt', 'a').write('start {who}\\n')\n"
    "time.sleep(3)\n"
    "open('log.txt', 'a').write('end {who}\\n')\n"
)


def test_two_replicas_take_turns_on_one_new_thread(cluster: Cluster, k8s_api: Any, tmp_path: Path) -> None:
    replicas = {who: k8s_api(data_dir=tmp_path / who) for who in ("a", "b")}
    tid = create_thread(replicas["a"], "shared")

    with ThreadPoolExecutor(2) as pool:
        turns = {who: pool.submit(run, c, tid, TURN.format(who=who)) for who, c in replicas.items()}
        events = {who: turn.result() for who, turn in turns.items()}

    log = stdout(run(replicas["a"], tid, "print(open('log.txt').read(), end='')")).splitlines()
    first, second = log[0].split()[1], log[2].split()[1]
    assert log == [f"start {first}", f"end {first}", f"start {second}", f"end {second}"]
    waited = [e["message"] for e in events[second] if e["type"] == "status" and e.get("phase") == "queued"]
    assert waited == [WAIT_MESSAGE]
    assert len(cluster.pods(tid)) == 1  # the second replica adopted the first one's pod
