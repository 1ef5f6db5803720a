"""Failures on the real cluster: a missing image fails fast, a crashed controller leaves no orphans,
a replica or containerd lost mid-turn, MinIO stopped mid-turn."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.config import Settings
from controller.k8s.lease import WAIT_MESSAGE
from devkit.client import ADMIN_TOKEN, bearer
from devkit.minio import running_minio
from devkit.ports import free_port
from devkit.ready import wait_answering
from tests.cluster.conftest import ROOT, Cluster, _run_script, connected, controller
from tests.support.client import create_thread, errors, run, stdout
from tests.support.poll import wait_until

pytestmark = pytest.mark.cluster


def test_missing_image_fails_the_turn_quickly_and_clearly(cluster: Cluster, k8s_api: Any) -> None:
    client = k8s_api(sandbox_image="localhost/threadbox-no-such-image:missing")
    tid = create_thread(client, "noimage")
    started = time.monotonic()
    events = run(client, tid, "print(1)")
    assert time.monotonic() - started < 30  # not the 120 s start timeout
    [err] = errors(events)
    assert err["kind"] == "sandbox_failed" and err["ename"] == "SandboxStartError"
    assert any(
        reason in err["evalue"] for reason in ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull")
    )
    cluster.wait("the failed pod to be removed", lambda: not cluster.pods(tid), timeout=30)
    assert [s.metadata.name for s in cluster.secrets()] == []


def test_memory_limit_ends_the_turn_as_a_dead_kernel(cluster: Cluster, k8s_api: Any) -> None:
    client = k8s_api(sandbox_memory_limit="300Mi", sandbox_memory_request="128Mi")
    tid = create_thread(client, "oom")
    assert stdout(run(client, tid, "print('up')")) == "up\n"
    [pod] = cluster.pods(tid)
    assert pod.spec.containers[0].resources.limits["memory"] == "300Mi"
    started = time.monotonic()
    events = run(client, tid, "big = b'x' * (1 << 30)")  # 1 GiB, touched: over the limit
    assert time.monotonic() - started < 30, events
    [err] = errors(events)
    assert err["kind"] == "kernel_died", err
    assert stdout(run(client, tid, "print('fine')")) == "fine\n"


def _serve_in_subprocess(settings: dict[str, Any], port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADBOX_")}
    for key, value in settings.items():
        env[f"THREADBOX_{key.upper()}"] = ",".join(value) if isinstance(value, list) else str(value)
    env["THREADBOX_ADMIN_TOKEN"] = ADMIN_TOKEN
    args = ["serve", "--port", str(port), "--chat-port", str(free_port())]
    code = f"from controller.cli import main; raise SystemExit(main({args!r}))"
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=out, stderr=subprocess.STDOUT)


@contextmanager
def _crashing_controller(settings: dict[str, Any], log: Path) -> Iterator[httpx.Client]:
    """A controller in its own process, SIGKILLed on the way out: no shutdown hook runs."""
    port = free_port()
    proc = _serve_in_subprocess(settings, port, log)
    http = httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers=bearer(ADMIN_TOKEN), timeout=httpx.Timeout(10, read=180)
    )
    try:
        wait_answering("the controller", f"http://127.0.0.1:{port}/healthz", proc, log, 60)
        yield http
    finally:
        proc.send_signal(signal.SIGKILL)  # a real crash
        proc.wait()
        http.close()


def test_crashed_controller_leaves_no_orphans(cluster: Cluster, k8s_settings: Any, tmp_path: Path) -> None:
    settings = k8s_settings()
    with _crashing_controller(settings, tmp_path / "crashing.log") as http:
        tid = create_thread(http, "crash")
        assert (
            stdout(run(http, tid, "open('made.txt', 'w').write('before the crash'); print('ok')")) == "ok\n"
        )
        [pod] = cluster.pods(tid)
    assert [p.metadata.uid for p in cluster.pods(tid)] == [pod.metadata.uid]  # left running

    # The next controller finds it (by label) and reaps it once idle, saving first.
    with controller({**settings, "idle_timeout": 3, "reap_interval": 1}) as second:
        cluster.wait("the orphaned pod to be reaped", lambda: not cluster.pods(tid), timeout=60)
        assert second.runtime.store.read_file(tid, "made.txt") == b"before the crash"
    cluster.wait("its Secret to be gone", lambda: not cluster.secrets(), timeout=60)


def test_secret_left_by_a_crash_before_its_pod_is_swept(cluster: Cluster, k8s_settings: Any) -> None:
    """A controller that died between creating a thread's Secret and its Pod leaves an ownerless Secret."""
    name = "tb-crash-aaaaaaaaaaaaaaaa"
    labels = {"app.kubernetes.io/name": "threadbox-sandbox", "threadbox.dev/thread": "crash-aaaaaaaaaaaaaaaa"}
    cluster.core.create_namespaced_secret(
        cluster.namespace,
        {"metadata": {"name": name, "labels": labels}, "stringData": {"connection.json": "{}"}},
    )

    async def sweep(stale_after: float) -> None:
        async with connected(Settings(**k8s_settings())) as backend:
            backend.stale_secret_seconds = stale_after
            assert await backend.list() == []

    asyncio.run(sweep(stale_after=3600))
    assert [s.metadata.name for s in cluster.secrets()] == [name]  # young: may be a start in progress
    asyncio.run(sweep(stale_after=0))
    cluster.wait("the stale Secret to be swept", lambda: not cluster.secrets(), timeout=30)


def test_a_replica_killed_mid_turn_hands_the_thread_to_the_other(
    cluster: Cluster, k8s_settings: Any, tmp_path: Path
) -> None:
    settings = k8s_settings()
    with controller(settings) as other:
        with _crashing_controller(settings, tmp_path / "killed.log") as doomed:
            tid = create_thread(doomed, "handover")
            assert stdout(run(doomed, tid, "open('done.txt', 'w').write('turn 1'); print('ok')")) == "ok\n"
            code = "import time\nprint('running', flush=True)\ntime.sleep(20)"  # outlives its replica
            with doomed.stream("POST", f"/threads/{tid}/execute", json={"code": code}) as resp:
                for line in resp.iter_lines():
                    if line and json.loads(line).get("text") == "running\n":
                        break  # the turn holds the thread's Lease and runs: kill its replica now
        # The other replica takes the Lease once it is no longer renewed, adopts the pod, answers.
        events = run(other, tid, "print(open('done.txt').read())")
        assert stdout(events) == "turn 1\n"
        assert [e["message"] for e in events if e["type"] == "status" and e["phase"] == "queued"] == [
            WAIT_MESSAGE
        ]
        assert other.runtime.store.read_file(tid, "done.txt") == b"turn 1"
        assert len(cluster.pods(tid)) == 1


def test_containerd_restarted_keeps_sandboxes_and_a_lost_one_comes_back_with_its_files(
    cluster: Cluster, k8s_api: Any
) -> None:
    client = k8s_api()
    tid = create_thread(client, "containerd")
    assert stdout(run(client, tid, "x = 41\nopen('kept.txt', 'w').write('kept'); print('ok')")) == "ok\n"
    [pod] = cluster.pods(tid)
    lib = ROOT / "hack" / "cluster" / "lib.sh"
    subprocess.run(["bash", "-c", f"source {lib} && stop_daemon containerd"], check=True, timeout=60)
    _run_script("hack/cluster/up", "kubernetes-cluster", timeout=600)  # starts containerd again
    # Its shims outlived it: the same pod and kernel, state and all.
    assert stdout(run(client, tid, "print(x + 1)")) == "42\n"
    assert [p.metadata.uid for p in cluster.pods(tid)] == [pod.metadata.uid]
    # A sandbox lost for good is started again, with the thread's files.
    cluster.core.delete_namespaced_pod(pod.metadata.name, cluster.namespace, grace_period_seconds=0)
    cluster.wait("the pod to be gone", lambda: not cluster.pods(tid), timeout=60)
    events = run(client, tid, "print(open('kept.txt').read())")
    assert stdout(events) == "kept\n", events


OUTAGE = 30.0  # seconds MinIO stays down: the acceptance's outage
CLEAR_WITHIN = 10.0  # seconds from the outage to the user's message that files were not saved


def test_minio_stopped_for_30_s_mid_turn_is_reported_loses_nothing_and_recovers_by_itself(
    cluster: Cluster, k8s_settings: Any, tmp_path: Path
) -> None:
    data = tmp_path / "minio-data"
    with ExitStack() as minio:
        server = minio.enter_context(running_minio(data, host=cluster.node_ip))
        settings = k8s_settings(
            minio_endpoint=server.endpoint,
            minio_access_key=server.access_key,
            minio_secret_key=server.secret_key,
            minio_bucket=server.store("outage").bucket,
        )
        with controller(settings) as client:
            tid = create_thread(client, "outage")
            assert stdout(run(client, tid, "x = 41\nopen('a.txt', 'w').write('a'); print('up')")) == "up\n"
            code = "import time\nopen('b.txt', 'w').write('b')\nprint('running', flush=True)\ntime.sleep(3)"
            events, down = _stop_mid_turn(client, tid, code, minio)
            [failed] = [e for e in errors(events) if e["ename"] == "PersistFailed"]
            assert "could not be saved" in failed["evalue"], failed
            assert failed["at"] - down <= CLEAR_WITHIN, (failed["at"] - down, events)
            # Still down: operators see why, and code still runs in the same kernel.
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "torage" in ready.text, ready.text
            events = run(client, tid, "open('c.txt', 'w').write('c'); print(x + 1)")
            assert stdout(events) == "42\n" and [e["ename"] for e in errors(events)] == ["PersistFailed"]
            time.sleep(max(0.0, down + OUTAGE - time.monotonic()))  # the outage's length, not a wait
            port = int(server.endpoint.rsplit(":", 1)[1])
            minio.enter_context(
                running_minio(data, host=cluster.node_ip, port=port, password=server.secret_key)
            )
            # Back by itself: ready again, and the next turn saves what the outage left unsaved.
            back = time.monotonic()
            assert wait_until(lambda: client.get("/readyz").status_code == 200, timeout=60)
            print(
                f"told {failed['at'] - down:.1f} s into the outage; ready {time.monotonic() - back:.1f} s after it"
            )
            assert stdout(run(client, tid, "print(x + 2)")) == "43\n"
            store = client.runtime.store
            assert {n: store.read_file(tid, n) for n in ("a.txt", "b.txt", "c.txt")} == {
                "a.txt": b"a",
                "b.txt": b"b",
                "c.txt": b"c",
            }


def _stop_mid_turn(
    client: httpx.Client, tid: str, code: str, minio: ExitStack
) -> tuple[list[dict[str, Any]], float]:
    """Runs ``code``, stops MinIO once it prints ``running``; its events, each stamped with its
    arrival (``at``, monotonic), and when MinIO stopped."""
    events: list[dict[str, Any]] = []
    down = 0.0
    with client.stream("POST", f"/threads/{tid}/execute", json={"code": code}) as resp:
        for line in resp.iter_lines():
            if not line:
                continue
            events.append({**json.loads(line), "at": time.monotonic()})
            if not down and events[-1].get("text") == "running\n":
                minio.close()
                down = time.monotonic()
    assert down, events
    return events, down
