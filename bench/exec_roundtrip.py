"""Round trip of `print(1)` through threadbox, beside jupyter_client talking to the same kernel.

Three ways to run `print(1)` in one already-started sandbox, alternating run by run:
- direct: an AsyncKernelClient on the sandbox's own connection info sends execute_request and
  waits for IOPub idle and the execute_reply (the floor: what any Jupyter client pays);
- manager: SandboxManager.run(thread_id, code) until its Done event (adds the liveness probe,
  event conversion, the post-turn persist and touch);
- http: POST /threads/{id}/execute to the real FastAPI app under uvicorn, reading the NDJSON
  stream to its `done` line (adds HTTP, JSON and the store lookup of the thread record).
Every client sees every other client's IOPub broadcast and skips it by parent id, so the
three pay the same for sharing the kernel. The HTTP client runs in the server's event loop.

Inside the manager's and HTTP turns, the backend calls a direct client does not make are timed
where they happen: the turn Lease's acquire (and its release, which runs after the answer),
the alive() probe, the post-turn persist and touch. Each timed run starts once the previous
turn's Lease release is done, as it is when a person sends the next message.

Usage: uv run python -m bench.exec_roundtrip [--runs 100] [--backends local kubernetes]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from jupyter_client.asynchronous.client import AsyncKernelClient

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
from controller.api import create_app
from controller.auth import create_token
from controller.backends.base import Backend, TurnLease
from controller.config import Settings
from devkit.ports import free_port

CODE = "print(1)"
WARMUP = 5
# manager p50 / direct p50. A pod's kernel answers over the pod network, and its turn keeps
# what a local one skips (the liveness cache, a pod's touch); issue 12 asked for 1.3x there.
GOALS = {"local": 1.1, "kubernetes": 1.3}


async def direct(kc: AsyncKernelClient) -> None:
    msg_id = kc.execute(CODE)
    while True:
        msg = await kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id and msg["content"].get("execution_state") == "idle":
            break
    while (await kc.get_shell_msg(timeout=30))["parent_header"].get("msg_id") != msg_id:
        pass


async def over_http(http: httpx.AsyncClient, thread_id: str) -> None:
    async with http.stream("POST", f"/threads/{thread_id}/execute", json={"code": CODE}) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            event = json.loads(line)
            if event["type"] == "done":
                if event["status"] != "ok":
                    raise RuntimeError(f"HTTP turn failed: {event}")
                return
    raise RuntimeError("the HTTP stream ended without a done event")


async def timed(fn: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await fn()
    return (time.perf_counter() - started) * 1000


PARTS = ("lease acquire", "alive", "persist", "touch", "lease release (after the answer)")
Parts = dict[str, list[float]]


def clocked(fn: Callable[..., Awaitable[Any]], into: list[float]) -> Callable[..., Awaitable[Any]]:
    async def call(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            into.append((time.perf_counter() - started) * 1000)

    return call


class TurnClock:
    """Times the backend calls the manager makes in a turn, and counts Leases not yet released.

    A turn's Lease is released in the background after its answer; ``settled()`` waits for
    that, so the release does not slow the next path's timed run (the direct one included).
    """

    def __init__(self, backend: Backend[Any]) -> None:
        self.parts: Parts = {part: [] for part in PARTS}
        self.held = 0
        for name in ("alive", "persist", "touch"):
            setattr(backend, name, clocked(getattr(backend, name), self.parts[name]))
        turn_lease = backend.turn_lease

        def clocked_lease(thread_id: str) -> ClockedLease | None:
            lease = turn_lease(thread_id)
            return None if lease is None else ClockedLease(lease, self)

        setattr(backend, "turn_lease", clocked_lease)  # noqa: B010 (mypy forbids assigning a method)

    def restart(self) -> None:
        for calls in self.parts.values():
            calls.clear()

    async def settled(self) -> None:
        while self.held:
            await asyncio.sleep(0.001)

    def summary(self, turns: int) -> dict[str, dict[str, float]]:
        return {
            part: {**summary(ms), "mean": statistics.fmean(ms), "per_turn": len(ms) / turns}
            for part, ms in self.parts.items()
            if ms
        }


class ClockedLease:
    """A turn's Lease, its acquire and release timed by ``clock``."""

    def __init__(self, lease: TurnLease, clock: TurnClock) -> None:
        self.lease = lease
        self.clock = clock

    async def acquire(self) -> AsyncIterator[str]:
        started = time.perf_counter()
        async for note in self.lease.acquire():
            yield note
        self.clock.held += 1
        self.clock.parts["lease acquire"].append((time.perf_counter() - started) * 1000)

    async def release(self) -> None:
        try:
            await clocked(self.lease.release, self.clock.parts["lease release (after the answer)"])()
        finally:
            self.clock.held -= 1


async def measure(settings: Settings, runs: int) -> dict[str, Any]:
    rt = served(settings)
    clock = TurnClock(rt.backend)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(rt), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    serving = asyncio.create_task(server.serve())  # its lifespan starts and closes the runtime
    while not server.started:
        await asyncio.sleep(0.05)
    kc = AsyncKernelClient()
    try:
        token, _ = create_token(rt.store, "bench")
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60
        ) as http:
            thread_id = (await http.post("/threads", json={"name": "bench"})).json()["id"]
            await turn(rt, thread_id, "1")  # starts the sandbox
            info = await rt.backend.find(thread_id)
            assert info is not None
            kc.load_connection_info(info.connection)
            kc.start_channels()
            await kc.wait_for_ready(timeout=60)
            ways: dict[str, Callable[[], Awaitable[None]]] = {
                "direct": lambda: direct(kc),
                "manager": lambda: turn(rt, thread_id, CODE),
                "http": lambda: over_http(http, thread_id),
            }
            times: dict[str, list[float]] = {way: [] for way in ways}
            for i in range(WARMUP + runs):
                if i == WARMUP:  # from here on, the parts belong to timed turns
                    clock.restart()
                for way, fn in ways.items():
                    # The previous turn's Lease release and usage record run after its answer:
                    # let them finish, so no path's timed run pays for another's.
                    await clock.settled()
                    await rt.accounting.settled()
                    ms = await timed(fn)
                    if i >= WARMUP:
                        times[way].append(ms)
            # The manager's and the HTTP path's turns; not the persist of the stop below.
            turns = clock.summary(2 * runs)
            await rt.manager.stop_thread(thread_id)
    finally:
        kc.stop_channels()
        server.should_exit = True
        await serving
    return {"paths": {way: summary(ms) for way, ms in times.items()}, "parts": turns}


def report(results: dict[str, Any]) -> str:
    rows, part_rows = [], []
    for backend, r in results["backends"].items():
        paths = r["paths"]
        floor = paths["direct"]
        for way, s in paths.items():
            rows.append(
                [
                    f"{backend}: {way}",
                    s["n"],
                    f"{s['p50']:.2f}",
                    f"{s['p95']:.2f}",
                    f"{s['p50'] / floor['p50']:.2f}",
                    f"{s['p95'] / floor['p95']:.2f}",
                ]
            )
        part_rows += [
            [
                f"{backend}: {part}",
                s["n"],
                f"{s['per_turn']:.2f}",
                *(f"{s[k]:.2f}" for k in ("p50", "p95", "mean")),
            ]
            for part, s in r["parts"].items()
        ]
    headers = ["backend: path", "n", "p50 (ms)", "p95 (ms)", "p50 / direct", "p95 / direct"]
    part_headers = ["backend: part of a turn", "calls", "per turn", "p50 (ms)", "p95 (ms)", "mean (ms)"]
    goals = [
        goal(
            f"{backend}: manager p50 / direct p50",
            r["paths"]["manager"]["p50"] / r["paths"]["direct"]["p50"],
            GOALS[backend],
            "x",
        )
        for backend, r in results["backends"].items()
    ]
    return "\n\n".join(
        [
            table(headers, rows),
            "\n".join(goals),
            "Backend calls inside the timed manager and HTTP turns (a direct client makes none of them):",
            table(part_headers, part_rows),
        ]
    )


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--runs", type=int, default=100, help="timed runs per path (after 5 warm-up runs)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    args = parser.parse_args()
    data: dict[str, Any] = {"machine": machine(), "code": CODE, "runs": args.runs, "backends": {}}
    for backend in args.backends:
        with tempfile.TemporaryDirectory() as tmp, backend_settings(backend, "exec", Path(tmp)) as settings:
            data["backends"][backend] = asyncio.run(measure(settings, args.runs))
        print(f"  {backend}: {data['backends'][backend]}", flush=True)
    write("exec_roundtrip", "Round trip of `print(1)`", data, report(data), save=not args.no_save)


if __name__ == "__main__":
    main()
