"""Where a sandbox start's time goes, on the real cluster: the parts of a cold start and of a
lone warm claim for a new thread, with the thread's kept kernel state loaded and without.

The manager's acquire calls the backend in order: ``start`` (a cold pod: credentials, Secret,
pod, policy check, Running; or a warm pod's claim and bind), ``ready`` (the kernel's
connection), ``touch`` and ``alive`` (the first probe, the two at once) and ``load_state``
(issue 15: the in-pod server fetches the thread's snapshot, none here, and would have the
kernel load it). Each call is timed by wrapping the backend's method. The whole, acquire ->
ready, is what bench.pod_start measures; "between the calls" is the whole less the calls
(touch and alive counted once, by the longer).

Baseline from the same run: the same starts with the state not kept (THREADBOX_KEEP_STATE off:
no ``load_state`` call). Runs alternate between the four kinds, so all see the same machine.
Keeping state or not makes another pod profile (the pod's env carries the cap), and a warm
pool deletes pods of another profile, so each setting gets a namespace of its own.

Needs the cluster (hack/cluster/up) and the image (hack/build-sandbox-image.sh).
Usage: uv run python -m bench.start_phases [--runs 8]
"""

from __future__ import annotations

import asyncio
import functools
import tempfile
import time
from collections import defaultdict
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any

from bench.cluster import describe, k8s_settings
from bench.common import arguments, machine, served, summary, table, write
from bench.pod_start import sandbox_ready
from bench.warm_burst import pool_full
from controller.config import Settings
from controller.runtime import Runtime

PHASES = ("start", "ready", "touch", "alive", "load_state")
KINDS = {  # name: (warm pool size, state kept)
    "cold, state kept": (0, True),
    "cold, state not kept": (0, False),
    "warm claim, state kept": (1, True),
    "warm claim, state not kept": (1, False),
}
PODS = {"sandbox_cpu_request": "10m", "sandbox_memory_request": "64Mi"}


class PhaseClock:
    """Times every call of the backend's start-path methods, into ``calls`` until taken."""

    def __init__(self, backend: Any) -> None:
        self.calls: dict[str, float] = {}
        for name in PHASES:
            setattr(backend, name, self._timed(name, getattr(backend, name)))

    def _timed(self, name: str, method: Any) -> Any:
        @functools.wraps(method)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                self.calls[name] = time.perf_counter() - started

        return timed

    def take(self) -> dict[str, float]:
        calls, self.calls = self.calls, {}
        return calls


async def one_start(rt: Runtime, clock: PhaseClock, warm: bool, thread_id: str) -> dict[str, float]:
    if warm:
        await pool_full(rt, 1)
    clock.take()
    whole = await sandbox_ready(rt, thread_id, "warm" if warm else "cold")
    calls = clock.take()
    await rt.manager.stop_thread(thread_id)
    probe = max(calls.get("touch", 0.0), calls.get("alive", 0.0))
    spent = sum(v for k, v in calls.items() if k not in ("touch", "alive")) + probe
    return {"whole": whole, **calls, "between the calls": whole - spent}


async def measure(settings: dict[bool, Settings], runs: int) -> dict[str, dict[str, list[float]]]:
    """``settings``: a namespace's for each value of keep_state."""
    times: dict[str, dict[str, list[float]]] = {kind: defaultdict(list) for kind in KINDS}
    async with AsyncExitStack() as stack:
        runtimes: dict[str, tuple[Runtime, PhaseClock]] = {}
        for kind, (pool, keep) in KINDS.items():
            rt = served(settings[keep].model_copy(update={"warm_pool_size": pool, "keep_state": keep}))
            await rt.start()
            stack.push_async_callback(rt.close)
            runtimes[kind] = (rt, PhaseClock(rt.backend))
        for run in range(-1, runs):  # run -1 warms up: images, policies, connections
            for kind, (rt, clock) in runtimes.items():
                took = await one_start(
                    rt, clock, KINDS[kind][0] > 0, f"p{run + 1}-{len(times[kind]['whole'])}"
                )
                if run >= 0:
                    for part, seconds in took.items():
                        times[kind][part].append(seconds)
            print(f"  run {run + 1}/{runs} done", flush=True)
    return {kind: dict(parts) for kind, parts in times.items()}


def report(data: dict[str, Any]) -> str:
    rows = []
    for kind, parts in data["results"].items():
        for part in ("whole", *PHASES, "between the calls"):
            if part in parts:
                s = parts[part]
                label = f"{kind}: acquire -> ready" if part == "whole" else f"  {part}"
                rows.append([label, s["n"], *(f"{s[k] * 1000:.1f}" for k in ("p50", "p95", "min", "max"))])
    return "\n\n".join(
        [
            f"Cluster: {data['cluster']}. runc pods; {data['runs']} runs of each kind, alternating.",
            table(["what", "n", "p50 (ms)", "p95 (ms)", "min (ms)", "max (ms)"], rows),
        ]
    )


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    host = machine()  # its load average at the start
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        settings = {}
        for keep in (True, False):
            (Path(tmp) / str(keep)).mkdir()
            settings[keep] = stack.enter_context(
                k8s_settings(f"phases-{int(keep)}", Path(tmp) / str(keep), **PODS)
            )
        times = asyncio.run(measure(settings, args.runs))
    results = {kind: {part: summary(v) for part, v in parts.items()} for kind, parts in times.items()}
    data: dict[str, Any] = {
        "machine": host,
        "cluster": describe(),
        "runs": args.runs,
        "results": results,
        "times": times,
    }
    write("start_phases", "Where a sandbox start's time goes", data, report(data), save=not args.no_save)


if __name__ == "__main__":
    main()
