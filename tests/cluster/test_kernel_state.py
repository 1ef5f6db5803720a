"""Kept kernel state on the real cluster (issue 15): a reaped pod's variables come back in its
thread's next pod, and another thread's pod cannot read or replace that snapshot."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from controller.kernelstate import BLOB
from tests.cluster.conftest import Cluster
from tests.cluster.probes import pod_s3_script
from tests.integration.test_kernel_state import CHECK, RESTORED, ROWS, expected, setup_code
from tests.support.client import create_thread, run, stdout

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

STEAL = pod_s3_script(
    r"""
key = "threads/VICTIM/blobs/KEY"
print(json.dumps({
    "read": attempt(lambda: s3.get_object(st["bucket"], key).read()),
    "plant": attempt(lambda: s3.put_object(st["bucket"], key, io.BytesIO(b"evil"), 4)),
}))
"""
)


def notes(events: list[dict[str, Any]]) -> list[str]:
    return [e["message"] for e in events if e["type"] == "status" and e["message"].startswith("Kernel state")]


def test_a_reaped_pods_variables_come_back_and_no_other_thread_reaches_them(
    cluster: Cluster, k8s_api: Any
) -> None:
    client = k8s_api(
        idle_timeout=4, reap_interval=1, sandbox_cpu_request="10m", sandbox_memory_request="64Mi"
    )
    victim, thief = create_thread(client, "victim"), create_thread(client, "thief")
    code = "import socket\nsecret = {'v': 'victim data'}\ntwice = lambda x: 2 * x\nconn = socket.socket()"
    stdout(run(client, victim, code))
    # While the victim idles: another thread's pod, with its own scoped credentials, can neither
    # read the victim's snapshot nor plant one for the victim's next pod to load.
    res = json.loads(stdout(run(client, thief, STEAL.replace("VICTIM", victim).replace("KEY", BLOB))))
    assert res == {"read": "S3Error:AccessDenied", "plant": "S3Error:AccessDenied"}
    cluster.wait("the idle pod to be reaped", lambda: not cluster.pods(victim), timeout=60)
    snapshot = io.BytesIO()
    client.runtime.store.download_blob(victim, BLOB, snapshot)  # saved by the pod, in MinIO
    assert snapshot.getvalue().startswith(b"threadbox-state/1\n")

    events = run(client, victim, "print(secret['v'], twice(21))")
    assert stdout(events) == "victim data 42\n"
    notes = [
        e["message"] for e in events if e["type"] == "status" and e["message"].startswith("Kernel state")
    ]
    assert notes == ["Kernel state: restored secret, socket, twice; could not keep conn (socket)."]


def test_variables_come_back_in_a_claimed_warm_pod(cluster: Cluster, k8s_api: Any) -> None:
    """The acceptance's payload (a 100 MB DataFrame, a fitted model, a dict, a lambda; a socket
    and a generator named as not kept), reaped and loaded in a pod claimed from the pool."""
    client = k8s_api(
        warm_pool_size=1,
        idle_timeout=4,
        reap_interval=1,
        exec_timeout=120,  # pandas and scikit-learn's first import under gVisor
        sandbox_cpu_request="10m",
        # The frame, its pickle and the snapshot file on HOME's tmpfs at once, beside the
        # libraries: about 500 MiB at the save (the limit, 2 GiB by default, is what counts).
        sandbox_memory_request="512Mi",
    )
    tid = create_thread(client, "warm")
    assert stdout(run(client, tid, setup_code(ROWS))) == "True\n"
    cluster.wait("the idle pod to be reaped", lambda: not cluster.pods(tid), timeout=120)
    backend = client.runtime.backend
    cluster.wait("a ready warm pod", lambda: sum(p.ready for p in backend.pools.values()) >= 1, timeout=90)
    events = run(client, tid, CHECK)
    assert stdout(events) == expected(ROWS)
    assert notes(events) == [RESTORED]
    [pod] = cluster.pods(tid)
    assert pod.metadata.name.startswith("tbw-")  # claimed from the pool, not started cold
