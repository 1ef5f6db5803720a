"""What sandboxing a local kernel costs: bubblewrap against a bare kernel, in the same run.

Both kernels come from the same lean env, are started by the local backend's Launcher and
talk ipc:// sockets; the only difference is the sandbox (the launcher, cgroups, bwrap's
namespaces and mounts, setpriv). Runs alternate bare and sandboxed so load drifts hit both.
- start: spawn to kernel ready (kernel_info answered, IOPub connected), as the manager waits;
- round trip: `print(1)` by a direct jupyter_client on the ready kernel, until idle and reply.

Usage: uv run python -m bench.isolation_cost [--starts 10] [--runs 100] [--no-save]
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient

from bench.common import arguments, goal, machine, summary, table, write
from bench.exec_roundtrip import direct
from controller.backends.local_sandbox import Isolation, Launcher, decide, run_parent
from controller.config import Settings
from controller.kernel import KernelSession
from controller.runtime import local_limits
from controller.sandbox_env import ensure_sandbox_python

WARMUP = 5


class Kernel:
    """One started kernel of a launcher, with its session, killed on close."""

    def __init__(self, launcher: Launcher, root: Path, name: str) -> None:
        self.launcher, self.name = launcher, name
        base = root / name
        base.mkdir(parents=True)
        prepared = launcher.prepare(name, base, run_parent(root) / name)
        self.spawned = launcher.launch(prepared, base / "kernel.log")
        self.session = KernelSession(self.spawned.connection, self._alive)

    async def _alive(self) -> bool:
        return self.spawned.proc.poll() is None

    def close(self) -> None:
        self.session.close()
        self.launcher.kill(self.name, self.spawned.proc.pid)
        self.spawned.proc.wait(timeout=10)
        self.launcher.release(self.name)
        shutil.rmtree(self.spawned.run)


async def start_seconds(launcher: Launcher, root: Path, name: str) -> float:
    began = time.perf_counter()
    kernel = Kernel(launcher, root, name)
    try:
        await kernel.session.start(60)
        return time.perf_counter() - began
    finally:
        kernel.close()


async def round_trips(launchers: dict[str, Launcher], root: Path, runs: int) -> dict[str, list[float]]:
    """Both kernels up at once, one run of each in turn, so they share the same moments of load."""
    kernels = {kind: Kernel(launcher, root, f"rt-{kind}") for kind, launcher in launchers.items()}
    clients: dict[str, AsyncKernelClient] = {}
    try:
        for kind, kernel in kernels.items():
            await kernel.session.start(60)
            clients[kind] = AsyncKernelClient()
            clients[kind].load_connection_info(kernel.spawned.connection)  # type: ignore[arg-type]
            clients[kind].start_channels(hb=False)
        times: dict[str, list[float]] = {kind: [] for kind in kernels}
        for i in range(WARMUP + runs):
            for kind, kc in clients.items():
                began = time.perf_counter()
                await direct(kc)
                if i >= WARMUP:
                    times[kind].append(time.perf_counter() - began)
        return times
    finally:
        for kc in clients.values():
            kc.stop_channels()
        for kernel in kernels.values():
            kernel.close()


async def measure(starts: int, runs: int) -> dict[str, Any]:
    python = ensure_sandbox_python()
    limits = local_limits(Settings())
    sandboxed = decide("bwrap", python, limits, Path(tempfile.gettempdir()) / "bench-isolation-cost")
    bare = Isolation(False, sandboxed.as_root, limits, None, "bench baseline")
    cap = Settings().max_output_bytes
    launchers = {"bare": Launcher(python, bare, cap), "bwrap": Launcher(python, sandboxed, cap)}
    result: dict[str, Any] = {"isolation": sandboxed.describe(), "start": {}, "roundtrip": {}}
    with tempfile.TemporaryDirectory(prefix="bench-iso-") as tmp:
        root = Path(tmp)
        start: dict[str, list[float]] = {k: [] for k in launchers}
        for i in range(starts):
            for kind, launcher in launchers.items():
                start[kind].append(await start_seconds(launcher, root, f"s{i}-{kind}"))
        trips = await round_trips(launchers, root, runs)
    for kind in launchers:
        result["start"][kind] = summary(start[kind])
        result["roundtrip"][kind] = summary(trips[kind])
    return result


def report(data: dict[str, Any]) -> str:
    start, trip = data["start"], data["roundtrip"]
    start_ratio = start["bwrap"]["p50"] / start["bare"]["p50"]
    trip_ratio = trip["bwrap"]["p50"] / trip["bare"]["p50"]
    data["ratios"] = {"start_p50": start_ratio, "roundtrip_p50": trip_ratio}
    rows = [
        [f"{what} ({kind})", f"{s['p50'] * 1000:.1f}", f"{s['p95'] * 1000:.1f}", s["n"]]
        for what, table_ in (("kernel start", start), ("print(1) round trip", trip))
        for kind, s in table_.items()
    ]
    return "\n".join(
        [
            f"Sandbox: {data['isolation']}.",
            "",
            table(["What", "p50 ms", "p95 ms", "n"], rows),
            "",
            goal("kernel start, bwrap / bare (p50)", start_ratio, 1.15, "x"),
            goal("round trip, bwrap / bare (p50)", trip_ratio, 1.1, "x"),
        ]
    )


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--starts", type=int, default=10, help="kernel starts of each kind (alternating)")
    parser.add_argument("--runs", type=int, default=100, help="timed print(1) round trips of each kind")
    args = parser.parse_args()
    data = {"machine": machine(), **asyncio.run(measure(args.starts, args.runs))}
    body = report(data)
    write(
        "isolation_cost",
        "Cost of sandboxing a local kernel (bubblewrap against bare)",
        data,
        body,
        not args.no_save,
    )


if __name__ == "__main__":
    main()
