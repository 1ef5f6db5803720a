"""N threads each run `time.sleep(1)` at once: total wall time beside the one-thread figure.

Measured through the SandboxManager with real kernels, on both backends, in one run on this
machine. "cold" starts every thread's sandbox in the same burst (start + restore + the turn),
measured once per size; "warm" runs the turn again in the started sandboxes, ``--repeat``
times per size (p50/p95 over those). The baseline is the 1-thread figure of the same run.
Kubernetes pods get tiny requests (10m CPU, 64Mi) so 50 fit on this 2-core node.

Usage: uv run python -m bench.concurrency [--threads 1 10 50] [--repeat 5] [--backends local kubernetes]
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    BACKENDS,
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
from controller.config import Settings
from controller.runtime import Runtime

CODE = "import time; time.sleep(1)"
GOAL = 1.5  # the most threads' warm wall p50 over one thread's (issue 12)


async def wall(rt: Runtime, ids: list[str]) -> float:
    t0 = time.perf_counter()
    await asyncio.gather(*(turn(rt, tid, CODE) for tid in ids))
    return time.perf_counter() - t0


async def measure(settings: Settings, counts: list[int], repeat: int) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    rt = served(settings)
    await rt.start()
    try:
        for n in counts:
            ids = [f"bench-{n}-{i}" for i in range(n)]
            cold = await wall(rt, ids)
            warm = summary([await wall(rt, ids) for _ in range(repeat)])
            results[str(n)] = {"cold_s": cold, "warm_s": warm}
            print(f"  {settings.backend} {n:>3} threads: warm p50 {warm['p50']:.2f}s, cold {cold:.2f}s")
            await asyncio.gather(*(rt.manager.stop_thread(tid) for tid in ids))
    finally:
        await rt.close()
    return results


def report(data: dict[str, Any]) -> str:
    rows = []
    for backend, results in data["backends"].items():
        base = results[min(results, key=int)]
        for n, r in results.items():
            warm = r["warm_s"]
            rows.append(
                [
                    backend,
                    n,
                    f"{warm['p50']:.2f}",
                    f"{warm['p95']:.2f}",
                    f"{warm['p50'] / base['warm_s']['p50']:.2f}",
                    f"{r['cold_s']:.2f}",
                    f"{r['cold_s'] / base['cold_s']:.2f}",
                ]
            )
    headers = [
        "backend",
        "threads",
        "warm wall p50 (s)",
        "warm wall p95 (s)",
        "warm p50 / 1 thread",
        "cold wall incl. start (s)",
        "cold / 1 thread",
    ]
    goals = []
    for backend, results in data["backends"].items():
        one, most = results[min(results, key=int)], max(results, key=int)
        ratio = results[most]["warm_s"]["p50"] / one["warm_s"]["p50"]
        goals.append(goal(f"{backend}: {most} threads' warm wall p50 / 1 thread's", ratio, GOAL, "x"))
    return table(headers, rows) + "\n\n" + "\n".join(goals)


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--repeat", type=int, default=5, help="warm runs per size")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    args = parser.parse_args()
    counts = sorted(args.threads)
    data: dict[str, Any] = {"machine": machine(), "code": CODE, "repeat": args.repeat, "backends": {}}
    for backend in args.backends:
        pods = {"sandbox_cpu_request": "10m", "sandbox_memory_request": "64Mi"}
        with (
            tempfile.TemporaryDirectory() as tmp,
            backend_settings(
                backend, "concurrency", Path(tmp), max_sandboxes=max(counts), **pods
            ) as settings,
        ):
            data["backends"][backend] = asyncio.run(measure(settings, counts, args.repeat))
    write(
        "concurrency", "N concurrent threads, each `time.sleep(1)`", data, report(data), save=not args.no_save
    )


if __name__ == "__main__":
    main()
