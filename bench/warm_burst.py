"""Warm claims for new threads in a burst: 20 threads' first messages at once, on the real cluster.

A controller with a warm pool of ``--burst`` pods (runc, tiny requests so they fit on this
2-core node) waits until the pool is full, then ``--burst`` new threads acquire a sandbox at
the same moment; each claim is timed from the manager's acquire to its "ready" status (the
claim patch, scoped storage credentials, the bind through the in-pod server, the kernel
already connected). The threads are stopped, the pool refills, and the next burst starts.

Baselines from the same run, between bursts:
- a lone claim: one new thread while the pool is full and nothing else runs;
- one API server round trip: a GET of one warm pod, the least any claim must pay;
- the floor of a burst, ``--burst`` at once: the turn Lease create every new thread needs (the
  one write that keeps two replicas from serving it at once), alone and beside a round trip to
  a warm pod's in-pod server (where a claim hands the thread over). No claim can do less, so a
  goal under this floor cannot be met on the machine that measured it.

Needs the cluster (hack/cluster/up) and the image (hack/build-sandbox-image.sh).
Usage: uv run python -m bench.warm_burst [--burst 20] [--bursts 5] [--lone 10]
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.cluster import describe, k8s_settings
from bench.common import arguments, goal, machine, percentile, served, summary, table, write
from bench.pod_start import started_as, time_to_ready
from controller.backends.kubernetes import KubernetesBackend
from controller.k8s import podstate
from controller.k8s.lease import lease_body, lease_name
from controller.k8s.names import warm_selector
from controller.runtime import Runtime

FILL_TIMEOUT = 600
GOALS_MS = {"p50": 40, "p99": 150}  # a claim in a burst (issue 12)


def backend_of(rt: Runtime) -> KubernetesBackend:
    backend = rt.backend
    if not isinstance(backend, KubernetesBackend):
        raise RuntimeError("the benchmark needs the Kubernetes backend")
    return backend


def pool_of(rt: Runtime) -> Any:
    pools = backend_of(rt).pools
    if len(pools) != 1:
        raise RuntimeError("the benchmark needs the Kubernetes backend with one warm pool")
    [pool] = pools.values()
    return pool


async def pool_full(rt: Runtime, size: int) -> None:
    deadline = time.monotonic() + FILL_TIMEOUT
    while pool_of(rt).ready < size:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the warm pool did not fill to {size} in {FILL_TIMEOUT} s")
        await asyncio.sleep(0.05)


async def api_round_trip(rt: Runtime) -> float:
    kube = backend_of(rt).kube
    listing = await kube.get(kube.core.list_namespaced_pod, kube.ns, limit=1)
    name = listing["items"][0]["metadata"]["name"]
    started = time.perf_counter()
    await kube.read(kube.core.read_namespaced_pod, name)
    return time.perf_counter() - started


async def lease_create(
    backend: KubernetesBackend, thread_id: str, started: float, pod_ip: str | None = None
) -> float:
    """One turn Lease created (beside a GET of the in-pod server at ``pod_ip``), timed from ``started``."""
    kube, now = backend.kube, datetime.now(UTC)
    body = lease_body(thread_id, kube.ns, "bench", now, now)
    create = kube.create(kube.coordination.create_namespaced_lease, body)
    if pod_ip is None:
        made = await create
    else:
        made, launch = await asyncio.gather(create, backend.server.kernel_launch(pod_ip))
        if launch is None:
            raise RuntimeError(f"the in-pod server at {pod_ip} did not answer")
    if made is None:
        raise RuntimeError(f"the Lease of {thread_id} existed already")
    return time.perf_counter() - started


async def floor(rt: Runtime, n: int, tag: str) -> tuple[list[float], list[float]]:
    """``n`` Lease creates at once, then ``n`` at once each beside a round trip to a warm pod."""
    backend = backend_of(rt)
    kube = backend.kube
    listing = await kube.get(kube.core.list_namespaced_pod, kube.ns, label_selector=warm_selector())
    ips = [ip for pod in listing["items"] if (ip := podstate.pod_ip(pod))][:n]
    if len(ips) < n:
        raise RuntimeError(f"{len(ips)} warm pods have an IP, {n} needed")
    alone, beside = [f"floor-{tag}-a{i}" for i in range(n)], [f"floor-{tag}-b{i}" for i in range(n)]
    started = time.perf_counter()
    took_alone = await asyncio.gather(*(lease_create(backend, t, started) for t in alone))
    started = time.perf_counter()
    took_beside = await asyncio.gather(
        *(lease_create(backend, t, started, ip) for t, ip in zip(beside, ips, strict=True))
    )
    delete = kube.coordination.delete_namespaced_lease
    await asyncio.gather(*(kube.delete(delete, lease_name(t)) for t in alone + beside))
    return list(took_alone), list(took_beside)


def claim_clock(rt: Runtime) -> tuple[float, float]:
    """(seconds, claims) the backend has spent claiming and binding warm pods, all so far."""
    sample = rt.metrics.registry.get_sample_value
    labels = {"result": "hit"}
    return (
        sample("threadbox_warm_pool_claim_seconds_sum", labels) or 0.0,
        sample("threadbox_warm_pool_claim_seconds_count", labels) or 0.0,
    )


async def claims(rt: Runtime, ids: list[str]) -> tuple[list[float], float]:
    """Each claim's acquire -> ready, and the mean of the part spent claiming and binding."""
    before, (spent, count) = started_as(rt, "warm"), claim_clock(rt)
    took = await asyncio.gather(*(time_to_ready(rt, tid) for tid in ids))
    if started_as(rt, "warm") != before + len(ids):
        raise RuntimeError(
            f"{len(ids) - started_as(rt, 'warm') + before:.0f} of {len(ids)} claims missed the pool"
        )
    spent_now, count_now = claim_clock(rt)
    await asyncio.gather(*(rt.manager.stop_thread(tid) for tid in ids))
    return list(took), (spent_now - spent) / (count_now - count)


async def measure(rt: Runtime, burst: int, bursts: int, lone: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {key: [] for key in ROWS}
    await rt.start()
    try:
        await pool_full(rt, burst)
        await claims(rt, ["warmup"])  # first use: policy, connections
        for b in range(bursts):
            for i in range(lone // bursts or 1):
                await pool_full(rt, burst)
                times["api"].append(await api_round_trip(rt))
                took, bound = await claims(rt, [f"lone-{b}-{i}"])
                times["lone"] += took
                times["bind_lone"].append(bound)
            await pool_full(rt, burst)
            alone, beside = await floor(rt, burst, str(b))
            times["floor_lease"] += alone
            times["floor_bind"] += beside
            took, bound = await claims(rt, [f"burst-{b}-{i}" for i in range(burst)])
            times["burst"] += took
            times["bind_burst"].append(bound)
            print(
                f"  burst {b + 1}/{bursts}: p50 {percentile(times['burst'][-burst:], 0.5) * 1000:.0f} ms, "
                f"max {max(times['burst'][-burst:]) * 1000:.0f} ms",
                flush=True,
            )
    finally:
        await rt.close()
    return times


ROWS = {
    "burst": "warm claim in a burst, new thread, acquire -> ready",
    "bind_burst": "  of which claiming and binding the pod, mean per burst",
    "lone": "baseline: a lone warm claim, new thread",
    "bind_lone": "  of which claiming and binding the pod",
    "api": "baseline: one API server round trip (GET of a pod)",
    "floor_lease": "floor of a burst: a turn Lease create, all at once",
    "floor_bind": "floor of a burst: a Lease create beside an in-pod server round trip, all at once",
}


def report(data: dict[str, Any]) -> str:
    r = data["results"]
    rows = [
        [label, r[key]["n"], *(f"{r[key][k] * 1000:.1f}" for k in ("p50", "p95", "p99", "max"))]
        for key, label in ROWS.items()
    ]
    burst = r["burst"]
    return "\n\n".join(
        [
            f"Cluster: {data['cluster']}. {data['bursts']} bursts of {data['burst']} claims, a pool of "
            f"{data['burst']} runc pods. p95 and p99 are nearest-rank.",
            table(["what", "n", "p50 (ms)", "p95 (ms)", "p99 (ms)", "max (ms)"], rows),
            "\n".join(
                goal(f"claim in a burst: {q}", burst[q] * 1000, ms, " ms") for q, ms in GOALS_MS.items()
            ),
            "\n".join(
                f"- Floor of a burst, {q}: {r['floor_bind'][q] * 1000:.1f} ms (goal {ms} ms)"
                for q, ms in GOALS_MS.items()
            ),
        ]
    )


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--burst", type=int, default=20, help="claims at once, and the pool's size")
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument("--lone", type=int, default=10, help="lone claims in all, spread between bursts")
    args = parser.parse_args()
    pods = {"sandbox_cpu_request": "10m", "sandbox_memory_request": "64Mi"}
    host = machine()  # its load average at the start
    with (
        tempfile.TemporaryDirectory() as tmp,
        k8s_settings(
            "warm-burst", Path(tmp), warm_pool_size=args.burst, max_sandboxes=args.burst + 1, **pods
        ) as settings,
    ):
        times = asyncio.run(measure(served(settings), args.burst, args.bursts, args.lone))
    results = {key: {**summary(v), "p99": percentile(v, 0.99)} for key, v in times.items()}
    data: dict[str, Any] = {
        "machine": host,
        "cluster": describe(),
        "burst": args.burst,
        "bursts": args.bursts,
        "results": results,
        "times": times,
    }
    write("warm_burst", "Warm claims in a burst", data, report(data), save=not args.no_save)


if __name__ == "__main__":
    main()
