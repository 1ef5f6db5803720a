"""N threads each run `time.sleep(1)` at once: total wall time beside the one-thread figure.

Measured through the SandboxManager on the local backend with real kernels, in one run,
on this machine. "warm" = sandboxes already started; "cold" includes starting them.
Usage: uv run python -m bench.concurrency [--threads 1 10 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from controller.config import Settings
from controller.events import Done
from controller.runtime import build_runtime

RESULTS = Path(__file__).parent / "results"


async def turn(rt: object, thread_id: str, code: str) -> None:
    async for event in rt.manager.run(thread_id, code):  # type: ignore[attr-defined]
        if isinstance(event, Done) and event.status != "ok":
            raise RuntimeError(f"turn failed in {thread_id}: {event}")


async def wall(rt: object, ids: list[str], code: str) -> float:
    t0 = time.perf_counter()
    await asyncio.gather(*(turn(rt, tid, code) for tid in ids))
    return time.perf_counter() - t0


async def measure(counts: list[int], repeat: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), max_sandboxes=max(counts), idle_timeout=3600)
        rt = build_runtime(settings)
        await rt.start()
        try:
            for n in counts:
                ids = [f"bench-{n}-{i}" for i in range(n)]
                cold = await wall(rt, ids, "import time; time.sleep(1)")
                warm = [await wall(rt, ids, "import time; time.sleep(1)") for _ in range(repeat)]
                results[str(n)] = {"cold_s": cold, "warm_s": statistics.median(warm)}
                print(
                    f"  {n:>3} threads: warm {results[str(n)]['warm_s']:.2f}s, cold {cold:.2f}s", flush=True
                )
                for tid in ids:
                    await rt.manager.stop_thread(tid)
        finally:
            await rt.close()
    return results


def report(results: dict[str, dict[str, float]]) -> str:
    base = results[min(results, key=int)]["warm_s"]
    lines = [
        "| threads | warm wall (s) | ratio to 1 thread | cold wall incl. start (s) |",
        "|---:|---:|---:|---:|",
    ]
    for n, r in results.items():
        lines.append(f"| {n} | {r['warm_s']:.2f} | {r['warm_s'] / base:.2f} | {r['cold_s']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 10, 20])
    parser.add_argument("--repeat", type=int, default=3, help="warm runs per size (median reported)")
    args = parser.parse_args()
    results = asyncio.run(measure(sorted(args.threads), args.repeat))
    machine = f"{platform.node()} {platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores, Python {platform.python_version()}"
    table = report(results)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "concurrency.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    (RESULTS / "concurrency.md").write_text(
        f"# N concurrent threads, each `time.sleep(1)`\n\nMachine: {machine}. Local backend, real kernels; "
        f"baseline is the 1-thread figure from the same run.\n\n{table}\n"
    )


if __name__ == "__main__":
    main()
