"""Sandbox pod start on the real cluster: acquire -> kernel ready, cold and warm, beside the raw floor.

"acquire -> kernel ready" is what a user waits for on a thread's first message: the
SandboxManager asks the Kubernetes backend for a sandbox (STS credentials, Secret, Pod,
NetworkPolicy check, wait for Running) and then waits for the kernel to answer kernel_info
and for the thread's files to be restored (none here).

The raw floor beside it, per run, is a bare pod plus a kernel start, each measured directly:
- bare pod: a pod of the same image with the sandbox's resources (no Secret, no kernel:
  ``sleep``), created and watched until Ready;
- kernel start: in another bare pod of the image, a probe Popens
  ``/opt/sandbox/bin/python -m ipykernel_launcher -f <connection file>`` (as the sandbox's
  entrypoint does) and times it until the kernel answers kernel_info and IOPub delivers, the
  handshake the controller waits for. It prints the time; the benchmark reads the pod's log.
  Timed inside the pod, because the host sees a container start only to the second and
  through the kubelet's status loop.

A second controller with a warm pool measures warm claims (claim patch, scoped credentials,
bind through the agent, kernel already connected): for a new thread, and for a returning
thread whose 10 MiB of files are restored at bind. Each warm run waits until the pools are full
again, and so do the other runs (no refill competes with them). Runs alternate so all see the
same machine. The image is cached on the node.

Every sandbox row is measured under runc and under gVisor (the ``gvisor`` RuntimeClass), each
in a namespace of its own, in the same runs: besides the starts, the ``print(1)`` round trip on
a live sandbox and the memory of an idle sandbox (its pod cgroup's usage, which the memory limit
counts, after the kernel is ready). The raw floor is runc's.

Needs the cluster (hack/cluster/up) and the image (hack/build-sandbox-image.sh).
Usage: uv run python -m bench.pod_start [--runs 20]
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from kubernetes import watch

from bench.cluster import core_api, describe, k8s_settings
from bench.common import arguments, goal, machine, served, summary, table, write
from controller.backends.kubernetes import KubernetesBackend
from controller.config import Settings
from controller.events import Status
from controller.runtime import Runtime

WARM_POOL = 2
RUNTIMES: dict[str, str | None] = {"runc": None, "gvisor": "gvisor"}
ROUNDTRIPS = 5  # print(1) round trips per run and runtime
IDLE_SETTLE = 2.0  # seconds an idle sandbox sits before its memory is read
CGROUP = Path("/sys/fs/cgroup/memory/kubepods")
RETURNING_FILES = 10  # of 1 MiB each: the returning thread's workspace
POD_TIMEOUT = 180

# Run in the pod by the image's own interpreter. The client connects first and retries every
# 10 ms (zmq's default is 100 ms), so the time is the kernel's, not the reconnect interval's.
KERNEL_PROBE = """
import queue, subprocess, sys, time
import zmq
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import write_connection_file

context = zmq.Context()
context.setsockopt(zmq.RECONNECT_IVL, 10)
path, _ = write_connection_file("/tmp/kernel.json")
kc = BlockingKernelClient(connection_file=path, context=context)
kc.load_connection_file()
kc.start_channels(hb=False)
started = time.perf_counter()
kernel = subprocess.Popen([sys.executable, "-m", "ipykernel_launcher", "-f", path])
while True:
    kc.kernel_info()
    try:
        if kc.get_shell_msg(timeout=1)["msg_type"] == "kernel_info_reply" and kc.get_iopub_msg(timeout=0.2):
            break
    except queue.Empty:
        pass
print(time.perf_counter() - started, flush=True)
kernel.kill()
"""
KERNEL_METHOD = (
    "in a bare pod of the sandbox image: Popen of `/opt/sandbox/bin/python -m ipykernel_launcher "
    "-f <connection file>` until kernel_info is answered and IOPub delivers, timed in the pod"
)

Pod = dict[str, Any]


def bare_pod(s: Settings, command: list[str]) -> Pod:
    """A pod of the sandbox image with the sandbox's resources and nothing else of threadbox."""
    resources = {
        "requests": {"cpu": s.sandbox_cpu_request, "memory": s.sandbox_memory_request},
        "limits": {"cpu": s.sandbox_cpu_limit, "memory": s.sandbox_memory_limit},
    }
    container = {
        "name": "c",
        "image": s.sandbox_image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "resources": resources,
    }
    return {
        "metadata": {"name": f"bare-{secrets.token_hex(4)}"},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0, "containers": [container]},
    }


def run_pod(core: Any, ns: str, body: Pod, done: Callable[[Pod], bool]) -> tuple[float, str]:
    """Create the pod, watch it until ``done``, delete it; the seconds taken and its log."""
    name = body["metadata"]["name"]
    started = time.perf_counter()
    core.create_namespaced_pod(ns, body)
    w = watch.Watch()  # type: ignore[no-untyped-call]
    try:
        for event in w.stream(  # type: ignore[no-untyped-call]
            core.list_namespaced_pod, ns, field_selector=f"metadata.name={name}", timeout_seconds=POD_TIMEOUT
        ):
            if done(event["raw_object"]):
                elapsed = time.perf_counter() - started
                return elapsed, core.read_namespaced_pod_log(name, ns)
    finally:
        w.stop()  # type: ignore[no-untyped-call]
        core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
    raise RuntimeError(f"pod {name} did not get there in {POD_TIMEOUT} s")


def ready(pod: Pod) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def finished(pod: Pod) -> bool:
    phase = pod.get("status", {}).get("phase")
    if phase == "Failed":
        raise RuntimeError(f"the kernel probe pod failed: {pod['status']}")
    return bool(phase == "Succeeded")


def bare_pod_ready(core: Any, s: Settings) -> float:
    return run_pod(core, s.sandbox_namespace, bare_pod(s, ["sleep", "3600"]), ready)[0]


def kernel_start(core: Any, s: Settings) -> float:
    body = bare_pod(s, ["/opt/sandbox/bin/python", "-c", KERNEL_PROBE])
    _, log = run_pod(core, s.sandbox_namespace, body, finished)
    return float(log.split()[-1])


async def time_to_ready(rt: Runtime, thread_id: str) -> float:
    """Time from the manager's acquire to the 'ready' status (kernel answered, files restored)."""
    started = time.perf_counter()
    took = None
    async for event in rt.manager.run(thread_id, "1"):
        if isinstance(event, Status) and event.phase == "ready":
            took = time.perf_counter() - started
    if took is None:
        raise RuntimeError(f"no sandbox became ready for {thread_id}")
    return took


async def sandbox_ready(rt: Runtime, thread_id: str, kind: str = "cold") -> float:
    """``time_to_ready``, checked to be a start of that ``kind``."""
    before = started_as(rt, kind)
    took = await time_to_ready(rt, thread_id)
    if started_as(rt, kind) != before + 1:
        raise RuntimeError(f"{thread_id} did not get a {kind} sandbox (an empty pool?)")
    return took


async def roundtrip(rt: Runtime, thread_id: str) -> float:
    started = time.perf_counter()
    async for _ in rt.manager.run(thread_id, "print(1)"):
        pass
    return time.perf_counter() - started


def pod_memory(core: Any, s: Settings, thread_id: str) -> float:
    """Bytes the thread's pod cgroup uses (what its memory limit counts), read on the node."""
    [pod] = core.list_namespaced_pod(
        s.sandbox_namespace, label_selector=f"threadbox.dev/thread={thread_id}"
    ).items
    qos = pod.status.qos_class.lower()
    path = CGROUP / ("" if qos == "guaranteed" else qos) / f"pod{pod.metadata.uid}" / "memory.usage_in_bytes"
    return float(path.read_text())


async def cold_run(rt: Runtime, core: Any, thread_id: str) -> tuple[float, list[float], float]:
    """A cold start, then round trips on that sandbox, then its idle memory."""
    took = await sandbox_ready(rt, thread_id)
    trips = [await roundtrip(rt, thread_id) for _ in range(ROUNDTRIPS)]
    await asyncio.sleep(IDLE_SETTLE)
    memory = await asyncio.to_thread(pod_memory, core, rt.settings, thread_id)
    await rt.manager.stop_thread(thread_id)
    return took, trips, memory


async def warm_run(rt: Runtime, thread_id: str) -> float:
    took = await sandbox_ready(rt, thread_id, "warm")
    await rt.manager.stop_thread(thread_id)
    return took


def started_as(rt: Runtime, kind: str) -> float:
    count = rt.metrics.registry.get_sample_value("threadbox_sandbox_start_seconds_count", {"kind": kind})
    return count or 0.0


async def pools_full(runtimes: list[Runtime]) -> None:
    deadline = time.monotonic() + POD_TIMEOUT
    for rt in runtimes:
        assert isinstance(rt.backend, KubernetesBackend)
        while sum(pool.ready for pool in rt.backend.pools.values()) < WARM_POOL:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the warm pools did not fill in {POD_TIMEOUT} s")
            await asyncio.sleep(0.05)


def store_files(rt: Runtime, thread_id: str, tmp: Path) -> None:
    """The returning thread's files, already in the store (as a reaped thread leaves them)."""
    for n in range(RETURNING_FILES):
        path = tmp / f"{thread_id}-{n}.bin"
        data = os.urandom(2**20)
        path.write_bytes(data)
        rt.store.put_file(thread_id, f"data/{n}.bin", path, hashlib.sha256(data).hexdigest())


async def measure(settings: dict[str, Settings], runs: int, tmp: Path) -> dict[str, list[float]]:
    core = core_api()
    floor_settings = settings["runc"]
    times: dict[str, list[float]] = {"bare": [], "kernel": []}
    cold: dict[str, Runtime] = {}
    warm: dict[str, Runtime] = {}
    for name, s in settings.items():
        cold[name] = served(s)
        # Same namespace and store; only this one keeps a pool (the other's starts stay cold).
        warm[name] = served(s.model_copy(update={"warm_pool_size": WARM_POOL}), cold[name].store)
        for key in [*SANDBOX_ROWS, "memory"]:
            times[f"{key}/{name}"] = []
    pools = list(warm.values())
    for rt in [*cold.values(), *pools]:
        await rt.start()
    try:
        for name in settings:  # first use: policy creation, page cache
            await cold_run(cold[name], core, f"bench-warmup-{name}")
            await pools_full(pools)
            await warm_run(warm[name], f"bench-warm-warmup-{name}")
        await asyncio.to_thread(kernel_start, core, floor_settings)
        for i in range(runs):
            await pools_full(pools)
            times["bare"].append(await asyncio.to_thread(bare_pod_ready, core, floor_settings))
            await pools_full(pools)
            times["kernel"].append(await asyncio.to_thread(kernel_start, core, floor_settings))
            for name in settings:
                await pools_full(pools)
                took, trips, memory = await cold_run(cold[name], core, f"bench-{name}-{i}")
                times[f"cold/{name}"].append(took)
                times[f"roundtrip/{name}"].extend(trips)
                times[f"memory/{name}"].append(memory)
                await pools_full(pools)
                times[f"warm_new/{name}"].append(await warm_run(warm[name], f"bench-new-{name}-{i}"))
                await asyncio.to_thread(store_files, warm[name], f"bench-back-{name}-{i}", tmp)
                await pools_full(pools)
                times[f"warm_returning/{name}"].append(await warm_run(warm[name], f"bench-back-{name}-{i}"))
            print(
                f"  run {i + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in times.items()),
                flush=True,
            )
    finally:
        for rt in [*pools, *cold.values()]:
            await rt.close()
    times["floor"] = [b + k for b, k in zip(times["bare"], times["kernel"], strict=True)]
    return times


FLOOR_ROWS = {
    "bare": "bare pod (runc), create -> Ready",
    "kernel": "kernel start (runc), measured directly",
    "floor": "raw floor (runc): bare pod + kernel start, per run",
}
SANDBOX_ROWS = {
    "cold": "cold sandbox, acquire -> kernel ready",
    "warm_new": "warm claim, new thread, acquire -> kernel ready",
    "warm_returning": f"warm claim, returning thread ({RETURNING_FILES} MiB restored), acquire -> kernel ready",
    "roundtrip": "`print(1)` round trip on a live sandbox",
}


def report(data: dict[str, Any]) -> str:
    r = data["results"]
    keys = [
        *FLOOR_ROWS.items(),
        *((f"{k}/{n}", f"{label} ({n})") for n in RUNTIMES for k, label in SANDBOX_ROWS.items()),
    ]
    rows = [
        [label, r[key]["n"], *(f"{r[key][k] * 1000:.0f}" for k in ("p50", "p95", "min", "max"))]
        for key, label in keys
    ]
    memory = [
        [
            f"idle sandbox, pod cgroup ({n})",
            r[f"memory/{n}"]["n"],
            *(f"{r[f'memory/{n}'][k] / 2**20:.0f}" for k in ("p50", "p95", "min", "max")),
        ]
        for n in RUNTIMES
    ]
    p50 = {key: v["p50"] for key, v in r.items()}
    goals = [
        goal("cold p50 (runc) / raw floor p50", p50["cold/runc"] / p50["floor"], 1.15, "x"),
        goal("warm claim, new thread (runc): p50", p50["warm_new/runc"] * 1000, 50, " ms"),
        goal("warm claim, new thread (runc): p95", r["warm_new/runc"]["p95"] * 1000, 150, " ms"),
        goal("warm claim, returning thread (runc): p50", p50["warm_returning/runc"] * 1000, 300, " ms"),
        goal("cold p50 (gVisor) / raw floor p50 (runc)", p50["cold/gvisor"] / p50["floor"], 1.3, "x"),
        goal("warm claim p50, gVisor / runc", p50["warm_new/gvisor"] / p50["warm_new/runc"], 1.1, "x"),
        goal(
            "`print(1)` round trip p50, gVisor / runc",
            p50["roundtrip/gvisor"] / p50["roundtrip/runc"],
            1.2,
            "x",
        ),
        goal("idle gVisor sandbox, pod cgroup p50", p50["memory/gvisor"] / 2**20, 130, " MiB"),
    ]
    return "\n\n".join(
        [
            f"Cluster: {data['cluster']}. Image `{data['image']}`, cached on the node. {data['runs']} runs, "
            f"each of every row in turn. Kernel start: {data['kernel_start']}. p95 is nearest-rank.",
            table(["what", "n", "p50 (ms)", "p95 (ms)", "min (ms)", "max (ms)"], rows),
            table(["memory", "n", "p50 (MiB)", "p95 (MiB)", "min (MiB)", "max (MiB)"], memory),
            "\n".join(goals),
        ]
    )


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    data: dict[str, Any] = {"machine": machine(), "cluster": describe(), "runs": args.runs}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        settings = {
            name: stack.enter_context(
                k8s_settings(
                    f"start-{name}", Path(tmp) / name, sandbox_cpu_request="100m", runtime_class_name=rc
                )
            )
            for name, rc in RUNTIMES.items()
        }
        times = asyncio.run(measure(settings, args.runs, Path(tmp)))
        data.update(image=settings["runc"].sandbox_image, kernel_start=KERNEL_METHOD)
    data["results"] = {key: summary(v) for key, v in times.items()}
    data["raw_s"] = times
    write("pod_start", "Sandbox pod start", data, report(data), save=not args.no_save)


if __name__ == "__main__":
    main()
