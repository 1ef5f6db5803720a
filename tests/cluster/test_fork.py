"""Forking a thread on the real cluster (issue 15): the fork's pod starts with the original's
files and variables, and the fork's later turns never reach the original's pod or storage."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.test_kernel_state import notes
from tests.support.client import create_thread, run, stdout

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


def pod_names(cluster: Cluster, thread_id: str) -> list[str]:
    return [p.metadata.name for p in cluster.pods(thread_id)]


def test_a_fork_has_the_files_and_variables_in_its_own_pod_and_the_original_keeps_its_own(
    cluster: Cluster, k8s_api: Any
) -> None:
    client = k8s_api(sandbox_cpu_request="10m", sandbox_memory_request="64Mi")
    tid = create_thread(client, "orig")
    stdout(run(client, tid, "x = 41; open('data.txt', 'w').write('orig')"))  # the pod stays live
    [original_pod] = pod_names(cluster, tid)
    resp = client.post(f"/threads/{tid}/fork", json={"name": "branch"})
    assert resp.status_code == 201, resp.text
    fork = resp.json()
    assert (fork["name"], fork["forked_from"], fork["state"], fork["live"]) == ("branch", tid, True, False)
    assert "saved just now" in fork["note"]

    first = run(
        client, fork["id"], "print(x, open('data.txt').read()); x = 99\nopen('new.txt', 'w').write('f')"
    )
    assert notes(first) == ["Kernel state: restored x."]
    assert stdout(first) == "41 orig\n"
    [fork_pod] = pod_names(cluster, fork["id"])
    assert fork_pod != original_pod and pod_names(cluster, tid) == [original_pod]
    stdout(run(client, fork["id"], "open('data.txt', 'w').write('changed')"))

    # The original's pod and storage are as they were: its kernel still has its own x.
    import_os = "import os; print(x, open('data.txt').read(), os.path.exists('new.txt'))"
    assert stdout(run(client, tid, import_os)) == "41 orig False\n"
    assert pod_names(cluster, tid) == [original_pod]
    assert [f["name"] for f in client.get(f"/threads/{tid}/files").json()] == ["data.txt"]
    assert client.get(f"/threads/{tid}/files/data.txt").content == b"orig"
    assert client.get(f"/threads/{fork['id']}/files/data.txt").content == b"changed"
