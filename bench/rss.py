"""Memory: the controller at 0 / 50 / 100 / 200 live threads, and one idle sandbox, beside bare kernels.

- controller: `threadbox serve` (local backend) in a child process; live threads are made over
  its HTTP API (each runs `1`). Its own RSS and PSS only, never its kernels', sampled 20 times
  0.1 s apart at each level. Baseline: the same venv's bare `python -c pass`-like interpreter.
- idle local sandbox: each of those kernels' process trees (it ran `1`, then idles);
  baseline: bare `python -m ipykernel_launcher` processes from the same lean env, started
  directly and run `1` the same way, measured while the controller's kernels are still alive.
- idle sandbox pod: the pod's processes (entrypoint with its agent, kernel, pause) summed, and
  the pod cgroup's memory.usage_in_bytes (cgroup v1 on this node; includes page cache);
  baseline: bare pods of the same image running only `python -m ipykernel_launcher`.
RSS counts shared pages (libraries) in every process; PSS splits them between sharers.

Usage: uv run python -m bench.rss [--threads 50 100 200] [--pods 20] [--bare 20] [--no-kubernetes]
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
from jupyter_client.blocking.client import BlockingKernelClient

from bench.common import (
    LIFECYCLE,
    arguments,
    backend_settings,
    goal,
    machine,
    served,
    summary,
    table,
    turn,
    write,
)
from controller.k8s.names import all_sandboxes_selector
from controller.sandbox_env import ensure_sandbox_python
from devkit.client import ADMIN_TOKEN, bearer
from devkit.procserver import Controller, controller_env, running_controller

MB = 1e6
SAMPLES = 20
SETTLE = 5.0  # seconds for a kernel that just answered to finish its post-start work
CONTROLLER_GOAL_MB = 200  # at the most live threads measured (issue 12: 200)


def memory(pids: list[int]) -> dict[str, float]:
    """RSS and PSS in MB summed over ``pids`` (from smaps_rollup; a vanished pid counts 0)."""
    total = {"rss_mb": 0.0, "pss_mb": 0.0}
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                total[f"{key.lower()}_mb"] += int(rest.split()[0]) * 1024 / MB
    return total


def parents() -> dict[int, int]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
    return found


def tree(pid: int, ppids: dict[int, int]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += [c for c, parent in ppids.items() if parent == p]
    return out


def sampled(pids: list[int]) -> dict[str, dict[str, float]]:
    samples = []
    for _ in range(SAMPLES):
        samples.append(memory(pids))
        time.sleep(0.1)
    return {key: summary([s[key] for s in samples]) for key in ("rss_mb", "pss_mb")}


def per_item(values: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {key: summary([v[key] for v in values]) for key in values[0]}


# -- the controller and local kernels ------------------------------------------------------


def controller(tmp: Path, max_threads: int) -> AbstractContextManager[Controller]:
    """``threadbox serve`` on the local backend in a child process, its data under ``tmp``."""
    settings = {"max_sandboxes": max_threads, **LIFECYCLE}
    env = controller_env(tmp, ensure_sandbox_python(), **settings)
    return running_controller(env, tmp / "serve.log")


async def make_live(url: str, names: list[str]) -> None:
    async with httpx.AsyncClient(
        base_url=url, headers=bearer(ADMIN_TOKEN), timeout=httpx.Timeout(30, read=600)
    ) as http:

        async def one(name: str) -> None:
            thread_id = (await http.post("/threads", json={"name": name})).json()["id"]
            resp = await http.post(f"/threads/{thread_id}/execute", json={"code": "1"})
            done = json.loads(resp.text.strip().splitlines()[-1])
            if done.get("status") != "ok":
                raise RuntimeError(f"thread {name}: {done}")

        await asyncio.gather(*(one(n) for n in names))


def bare_kernels(python: Path, tmp: Path, count: int) -> dict[str, dict[str, float]]:
    """``count`` bare kernels from the lean env, each run `1`, measured idle, then stopped."""
    procs, clients = [], []
    try:
        for i in range(count):
            conn = tmp / f"bare-{i}.json"
            procs.append(
                subprocess.Popen(
                    [str(python), "-m", "ipykernel_launcher", "-f", str(conn)],
                    cwd=tmp,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for i in range(count):
            conn = tmp / f"bare-{i}.json"
            while not conn.exists():
                time.sleep(0.05)
            kc = BlockingKernelClient(connection_file=str(conn))
            kc.load_connection_file()
            kc.start_channels()
            clients.append(kc)
            kc.wait_for_ready(timeout=300)
            kc.execute_interactive("1", timeout=60, output_hook=lambda _: None)
        time.sleep(SETTLE)
        ppids = parents()
        return per_item([memory(tree(p.pid, ppids)) for p in procs])
    finally:
        for kc in clients:
            kc.stop_channels()
        for p in procs:
            p.kill()
            p.wait()


def measure_local(counts: list[int], bare: int) -> dict[str, Any]:
    out: dict[str, Any] = {"controller": {}, "sandbox": {}}
    floor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(1)
        out["bare_interpreter"] = sampled([floor.pid])
    finally:
        floor.kill()
        floor.wait()
    with tempfile.TemporaryDirectory() as tmp_dir, controller(Path(tmp_dir), max(counts)) as served:
        tmp = Path(tmp_dir)
        live = 0
        for n in [0, *counts]:
            asyncio.run(make_live(served.url, [f"t{i}" for i in range(live, n)]))
            live = n
            time.sleep(SETTLE)
            out["controller"][str(n)] = sampled([served.pid])
            print(f"  controller at {n} threads: {out['controller'][str(n)]['rss_mb']['p50']:.0f} MB RSS")
        ppids = parents()
        kernels = [pid for pid, parent in ppids.items() if parent == served.pid]
        assert len(kernels) == live, f"{len(kernels)} kernel processes for {live} live threads"
        out["sandbox"]["local_sandbox"] = per_item([memory(tree(k, ppids)) for k in kernels])
        out["sandbox"]["bare_local_kernel"] = bare_kernels(ensure_sandbox_python(), tmp, bare)
    return out


# -- pods --------------------------------------------------------------------------------


def pod_memory(uid: str) -> dict[str, float]:
    """The pod's processes (every container, pause included) and its cgroup's usage."""
    (cgroup,) = Path("/sys/fs/cgroup/memory/kubepods").glob(f"**/pod{uid}")
    pids = [int(p) for f in cgroup.glob("**/cgroup.procs") for p in f.read_text().split()]
    usage = int((cgroup / "memory.usage_in_bytes").read_text()) / MB
    return {**memory(pids), "cgroup_usage_mb": usage}


def bare_pod(image: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"bare-kernel-{secrets.token_hex(4)}", "labels": {"app": "bench-bare-kernel"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "kernel",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-m", "ipykernel_launcher", "-f", "/tmp/kernel.json"],
                    "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}},
                }
            ],
        },
    }


async def measure_pods(count: int) -> dict[str, Any]:
    from bench.cluster import core_api  # the Kubernetes client only when pods are measured

    core = core_api()
    pods = {"sandbox_cpu_request": "10m", "sandbox_memory_request": "64Mi", "max_sandboxes": count}
    with tempfile.TemporaryDirectory() as tmp, backend_settings("kubernetes", "rss", Path(tmp), **pods) as s:
        ns = s.sandbox_namespace
        for _ in range(count):
            core.create_namespaced_pod(ns, bare_pod(s.sandbox_image))
        rt = served(s)
        await rt.start()
        try:
            await asyncio.gather(*(turn(rt, f"idle-{i}", "1") for i in range(count)))
            # The bare kernels have no client to tell when they are ready: wait until all run, then settle.
            while any(
                p.status.phase != "Running"
                for p in core.list_namespaced_pod(ns, label_selector="app=bench-bare-kernel").items
            ):
                await asyncio.sleep(0.5)
            await asyncio.sleep(3 * SETTLE)

            def measured(selector: str) -> dict[str, dict[str, float]]:
                items = core.list_namespaced_pod(ns, label_selector=selector).items
                return per_item([pod_memory(p.metadata.uid) for p in items])

            return {
                "sandbox_pod": measured(all_sandboxes_selector()),
                "bare_kernel_pod": measured("app=bench-bare-kernel"),
            }
        finally:
            await rt.close()  # pods outlive it; the namespace goes with them


SANDBOXES = {
    "local_sandbox": "idle local sandbox (threadbox kernel tree)",
    "bare_local_kernel": "baseline: bare ipykernel_launcher, lean env",
    "sandbox_pod": "idle sandbox pod",
    "bare_kernel_pod": "baseline: pod running only ipykernel_launcher",
}
LABELS = {"rss_mb": "RSS", "pss_mb": "PSS", "cgroup_usage_mb": "cgroup usage"}


def rows(label: str, s: dict[str, dict[str, float]]) -> list[list[object]]:
    return [[f"{label}: {LABELS[key]}", v["n"], f"{v['p50']:.1f}", f"{v['p95']:.1f}"] for key, v in s.items()]


def report(data: dict[str, Any]) -> str:
    ctrl = [row for n, s in data["controller"].items() for row in rows(f"controller, {n} live threads", s)]
    ctrl += rows("baseline: bare interpreter of the controller's venv", data["bare_interpreter"])
    idle = [row for key, s in data["sandbox"].items() for row in rows(SANDBOXES[key], s)]
    headers = ["what", "samples", "p50 (MB)", "p95 (MB)"]
    counts = sorted(data["controller"], key=int)
    grown = data["controller"][counts[-1]]["rss_mb"]["p50"] - data["controller"][counts[0]]["rss_mb"]["p50"]
    per_thread = f"Controller RSS per live thread: {grown / int(counts[-1]):.2f} MB ({counts[0]} to {counts[-1]} threads)."
    most = data["controller"][counts[-1]]["rss_mb"]["p50"]
    goals = [goal(f"controller at {counts[-1]} live threads: RSS p50", most, CONTROLLER_GOAL_MB, " MB")]
    goals += [
        goal(f"{SANDBOXES[key]}: RSS p95", s["rss_mb"]["p95"], 100, " MB")
        for key, s in data["sandbox"].items()
        if not key.startswith("bare")
    ]
    return "\n\n".join(
        [
            "## Controller",
            table(headers, ctrl),
            per_thread,
            "## Idle sandbox",
            table(headers, idle),
            "\n".join(goals),
        ]
    )


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--threads", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--bare", type=int, default=20, help="bare local kernels for the baseline")
    parser.add_argument("--pods", type=int, default=20, help="sandbox pods, and as many bare kernel pods")
    parser.add_argument("--no-kubernetes", action="store_true")
    args = parser.parse_args()
    data: dict[str, Any] = {"machine": machine(), **measure_local(sorted(args.threads), args.bare)}
    if not args.no_kubernetes:
        data["sandbox"].update(asyncio.run(measure_pods(args.pods)))
    write("rss", "Memory: controller and idle sandbox", data, report(data), save=not args.no_save)


if __name__ == "__main__":
    main()
