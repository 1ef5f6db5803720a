"""Issue 3 acceptance on the real cluster, through the real HTTP API: a pod per thread."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import pytest

from tests.cluster.conftest import Cluster, controller
from tests.support.client import create_thread, errors, ok, run, stdout

pytestmark = pytest.mark.cluster

PLOT = """
import matplotlib.pyplot as plt
plt.plot([1, 2, 3], [3, 1, 2])
plt.show()
"""


def _uid(client: Any, tid: str) -> str:
    return str(client.runtime.manager._live[tid].info.uid)


def test_threads_get_their_own_pods_files_and_plots(cluster: Cluster, k8s_api: Any) -> None:
    client = k8s_api()
    a, b = create_thread(client, "a"), create_thread(client, "b")
    for tid, content in ((a, "from-a"), (b, "from-b")):
        events = run(client, tid, f"open('out.csv', 'w').write('{content}'); secret = '{content}'")
        assert events[-1]["type"] == "done" and events[-1]["status"] == "ok", events
        assert {"type": "files", "changed": ["out.csv"], "deleted": [], "refused": {}} in events
    for tid, content in ((a, "from-a"), (b, "from-b")):
        assert stdout(run(client, tid, "print(open('out.csv').read(), secret)")) == f"{content} {content}\n"
        assert client.get(f"/threads/{tid}/files/out.csv").content == content.encode()
        [pod] = cluster.pods(tid)
        assert pod.metadata.uid == _uid(client, tid) and pod.status.phase == "Running"
    assert _uid(client, a) != _uid(client, b)
    # An upload reaches the live pod's workspace (the agent's PUT /files), not only the store.
    resp = client.post(f"/threads/{a}/files", files={"file": ("data/in.txt", b"uploaded")})
    assert resp.status_code == 201, resp.text
    assert stdout(run(client, a, "print(open('data/in.txt').read())")) == "uploaded\n"
    images = [e for e in run(client, a, PLOT) if e["type"] == "display" and "image/png" in e["data"]]
    assert len(images) == 1
    assert base64.b64decode(images[0]["data"]["image/png"]).startswith(b"\x89PNG")


def test_idle_pod_is_reaped_with_files_saved_and_restored_in_a_new_pod(
    cluster: Cluster, k8s_api: Any
) -> None:
    client = k8s_api(idle_timeout=6, reap_interval=1)
    tid = create_thread(client, "idle")
    # Written after the turn ended, so only the save-before-reap can have stored it.
    run(
        client,
        tid,
        "import threading\nthreading.Timer(1, lambda: open('late.txt', 'w').write('late')).start()",
    )
    first = _uid(client, tid)
    cluster.wait("the idle pod to be reaped", lambda: not cluster.pods(tid), timeout=60)
    assert not client.runtime.manager.is_live(tid)
    told = cluster.core.list_namespaced_event(cluster.namespace, field_selector=f"involvedObject.uid={first}")
    ours = [e.message for e in told.items if e.source.component == "threadbox-controller"]
    # What `kubectl describe pod` shows; the kernel's variables (a module here) were kept too.
    assert [m.split("; saved ")[0] for m in ours] == ["Stopped (idle); its files were saved"], ours
    assert ours[0].endswith(".") and "saved 1 variable(s)" in ours[0]
    assert client.runtime.store.read_file(tid, "late.txt") == b"late"  # in MinIO
    events = run(client, tid, "print(open('late.txt').read())")
    assert stdout(events) == "late\n", events
    [pod] = cluster.pods(tid)
    assert pod.metadata.uid == _uid(client, tid) != first


def test_pod_deleted_mid_execution_ends_the_turn_and_the_next_recovers(
    cluster: Cluster, k8s_api: Any
) -> None:
    client = k8s_api()
    tid = create_thread(client, "deleted")
    run(client, tid, "open('keep.txt', 'w').write('kept'); x = 1")
    first = _uid(client, tid)
    pod_name = cluster.pods(tid)[0].metadata.name
    threading.Timer(2, cluster.core.delete_namespaced_pod, (pod_name, cluster.namespace)).start()
    started = time.monotonic()
    events = run(client, tid, "import time\nfor i in range(120):\n    print(i, flush=True); time.sleep(0.5)")
    assert time.monotonic() - started < 30  # detected, not run to its end (60 s) or hung
    [err] = errors(events)
    assert err["kind"] == "kernel_died" and "fresh kernel" in err["evalue"]
    assert events[-1]["type"] == "done" and events[-1]["status"] == "error"
    after = run(client, tid, "print(open('keep.txt').read()); print('x' in dir())")
    assert stdout(after) == "kept\nFalse\n"
    assert _uid(client, tid) != first
    assert [p.metadata.uid for p in cluster.pods(tid)] == [_uid(client, tid)]


def test_kernel_exiting_inside_a_running_pod_is_a_dead_kernel(cluster: Cluster, k8s_api: Any) -> None:
    """The entrypoint relaunches an exited kernel, so the pod stays Running; the turn must still
    end at once as kernel_died (not hang until the execution timeout), and the next turn recovers."""
    client = k8s_api(exec_timeout=60)
    tid = create_thread(client, "exit")
    run(client, tid, "open('keep.txt', 'w').write('kept'); x = 1")
    first = _uid(client, tid)
    started = time.monotonic()
    events = run(client, tid, "import os; open('last.txt', 'w').write('last words'); os._exit(1)")
    assert time.monotonic() - started < 15, events
    [err] = errors(events)
    assert err["kind"] == "kernel_died", err
    after = run(client, tid, "print(open('keep.txt').read(), open('last.txt').read()); print('x' in dir())")
    assert stdout(after) == "kept last words\nFalse\n"
    assert _uid(client, tid) != first


def test_restarted_controller_adopts_running_pods(cluster: Cluster, k8s_settings: Any) -> None:
    settings = k8s_settings()
    with controller(settings) as first:
        tids = [create_thread(first, name) for name in ("r1", "r2")]
        for n, tid in enumerate(tids):
            ok(run(first, tid, f"state = {n + 41}"))
        uids = {tid: _uid(first, tid) for tid in tids}
    # The first controller is gone; its pods are not.
    assert {tid: [p.metadata.uid for p in cluster.pods(tid)] for tid in tids} == {
        t: [u] for t, u in uids.items()
    }
    with controller(settings) as second:
        for n, tid in enumerate(tids):
            before = time.time()
            events = run(second, tid, "print(state + 1)")
            assert stdout(events) == f"{n + 42}\n", events  # same kernel: its variables survived
            assert _uid(second, tid) == uids[tid]
            # Activity is recorded on the pod, where the next controller would read it.
            [pod] = cluster.pods(tid)
            assert float(pod.metadata.annotations["threadbox.dev/last-active"]) >= before
        adopted = second.get("/metrics").text
        assert 'threadbox_sandbox_start_seconds_count{kind="adopted"} 2.0' in adopted
