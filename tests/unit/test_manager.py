"""SandboxManager on the in-tree fake backend: ordering, queueing, eviction, reaping, persist
failures, dead kernels and the turn's Lease, exact and with no kernel (explicit signals, no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest

from controller.agent.base import Turn
from controller.agent.direct import DirectAgent
from controller.backends.fake import FakeBackend, KernelDies, KernelHangs
from controller.events import Done, Error, Event, FilesChanged, Status, Stream
from controller.manager import ManagerConfig, SandboxManager
from controller.metrics import Metrics
from controller.stores.base import StoreUnavailable
from tests.support.poll import until

TIMEOUT = 5
CONFIG = ManagerConfig(
    max_sandboxes=4,
    idle_timeout=3600,
    reap_interval=3600,
    exec_timeout=30,
    interrupt_grace=1,
    max_output_bytes=1 << 20,
    start_timeout=5,
)


class Gates:
    """A script whose code ``wait:<name>`` blocks until the test opens gate ``name``, records
    ``ran:<code>`` when each piece of code starts, ``die`` kills the kernel, ``write:<n>`` a file."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.ran: list[str] = []
        self.started: dict[str, asyncio.Event] = {}
        self.backend: FakeBackend | None = None

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    def running(self, code: str) -> asyncio.Event:
        return self.started.setdefault(code, asyncio.Event())

    async def reached(self, code: str) -> None:
        await asyncio.wait_for(self.running(code).wait(), TIMEOUT)

    async def script(self, code: str) -> AsyncIterator[Event]:
        code = code.strip()  # a fenced block ends with a newline
        self.ran.append(code)
        self.running(code).set()
        if code.startswith("wait:"):
            await self.gate(code.removeprefix("wait:")).wait()
        if code == "die":
            raise KernelDies
        if code == "hang":
            raise KernelHangs
        if code.startswith("write:") and self.backend is not None:
            thread_id, name = code.removeprefix("write:").split("/")
            self.backend.sandboxes[thread_id].files[name] = b"data"
        yield Stream(type="stdout", text=code)


@pytest.fixture
def gates() -> Gates:
    return Gates()


@pytest.fixture
def make(gates: Gates) -> Callable[..., tuple[SandboxManager, FakeBackend]]:
    def build(**overrides: Any) -> tuple[SandboxManager, FakeBackend]:
        backend = FakeBackend(gates.script)
        gates.backend = backend
        return SandboxManager(backend, replace(CONFIG, **overrides), Metrics(), backend.connect), backend

    return build


def sample(manager: SandboxManager, name: str) -> float | None:
    return manager.metrics.registry.get_sample_value(name)


async def collect(events: AsyncIterator[Event]) -> list[Event]:
    return [e async for e in events]


def out(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, Stream))


def done(events: list[Event]) -> Done:
    assert isinstance(events[-1], Done), events
    return events[-1]


async def test_a_turn_starts_a_sandbox_runs_and_the_next_reuses_it(make: Any) -> None:
    manager, backend = make()
    first = await collect(manager.run("t1", "print(1)"))
    assert [e.phase for e in first if isinstance(e, Status)] == ["starting", "restoring", "ready"]
    assert out(first) == "print(1)" and done(first).status == "ok"
    second = await collect(manager.run("t1", "x"))
    assert out(second) == "x" and not [e for e in second if isinstance(e, Status)]
    assert [op for op, _ in backend.log].count("start") == 1


async def test_turns_of_one_thread_run_in_arrival_order_and_threads_concurrently(
    make: Any, gates: Gates
) -> None:
    manager, _ = make()
    first = asyncio.create_task(collect(manager.run("t1", "wait:a")))
    await gates.reached("wait:a")
    later = [asyncio.create_task(collect(manager.run("t1", f"n{i}"))) for i in range(3)]
    await until(lambda: manager.turns_waiting("t1") == 3, TIMEOUT, 0)  # the code's own signal
    other = await asyncio.wait_for(collect(manager.run("t2", "other")), TIMEOUT)  # not held up by t1
    assert out(other) == "other"
    gates.gate("a").set()
    await asyncio.wait_for(asyncio.gather(first, *later), TIMEOUT)
    assert [c for c in gates.ran if c != "other"] == ["wait:a", "n0", "n1", "n2"]


async def test_execute_belongs_to_a_turn(make: Any) -> None:
    manager, _ = make()
    with pytest.raises(RuntimeError, match="outside a turn"):
        await collect(manager.execute("t1", "x"))


async def test_an_agent_turn_keeps_its_thread_between_its_executions(make: Any, gates: Gates) -> None:
    """Two direct-mode messages with two blocks each: the second never runs between the first's."""
    manager, _ = make()
    agent = DirectAgent(manager)

    def message(*blocks: str) -> str:
        return "\n".join(f"```python\n{b}\n```" for b in blocks)

    a = asyncio.create_task(collect(manager.turn("t1", agent.respond(Turn("t1", message("wait:a", "a2"))))))
    await gates.reached("wait:a")
    b = asyncio.create_task(collect(manager.turn("t1", agent.respond(Turn("t1", message("b1", "b2"))))))
    await until(lambda: manager.turns_waiting("t1") == 1, TIMEOUT, 0)  # the code's own signal
    gates.gate("a").set()
    await asyncio.wait_for(asyncio.gather(a, b), TIMEOUT)
    assert gates.ran == ["wait:a", "a2", "b1", "b2"]


async def test_a_full_house_queues_with_its_position_then_evicts_the_idle_lru(
    make: Any, gates: Gates
) -> None:
    manager, backend = make(max_sandboxes=2)
    await collect(manager.run("old", "write:old/a.txt"))  # idle, least recently used
    busy = asyncio.create_task(collect(manager.run("busy", "wait:busy")))
    await gates.reached("wait:busy")
    recent = await collect(manager.run("recent", "x"))
    assert done(recent).status == "ok"
    # "old" was evicted for "recent" (persisted first); now both live sandboxes are in use or
    # newer, and "busy" runs: a fourth thread waits, and says where it is in the queue.
    assert backend.log.index(("persist", "old")) < backend.log.index(("stop", "old"))
    assert backend.log.index(("stop", "old")) < backend.log.index(("start", "recent"))
    assert backend.stored["old"] == {"a.txt": b"data"}
    recent_turn = asyncio.create_task(collect(manager.run("recent", "wait:recent")))
    await gates.reached("wait:recent")
    queued = asyncio.create_task(collect(manager.run("new", "y")))
    await until(lambda: sample(manager, "threadbox_queue_length") == 1, TIMEOUT, 0)  # the code's own signal
    gates.gate("recent").set()
    new = await asyncio.wait_for(queued, TIMEOUT)
    assert next((e.phase, e.queue_position) for e in new if isinstance(e, Status)) == ("queued", 1)
    assert out(new) == "y" and not manager.is_live("recent") and manager.is_live("busy")
    gates.gate("busy").set()
    await asyncio.wait_for(asyncio.gather(busy, recent_turn), TIMEOUT)


async def test_reaping_persists_and_stops_idle_sandboxes_but_never_a_running_turn(
    make: Any, gates: Gates
) -> None:
    manager, backend = make(idle_timeout=0.0)
    await collect(manager.run("idle", "write:idle/f.csv"))
    running = asyncio.create_task(collect(manager.run("running", "wait:r")))
    await gates.reached("wait:r")
    assert await manager.reap_once() == ["idle"]
    assert backend.stored["idle"] == {"f.csv": b"data"} and "idle" not in backend.sandboxes
    assert manager.is_live("running")
    gates.gate("r").set()
    await asyncio.wait_for(running, TIMEOUT)
    again = await collect(manager.run("idle", "x"))  # comes back with its files
    assert done(again).status == "ok" and backend.sandboxes["idle"].files == {"f.csv": b"data"}


async def test_a_persist_failure_keeps_the_output_and_says_the_files_wait(make: Any) -> None:
    manager, backend = make()
    backend.persist_error = StoreUnavailable("MinIO is down")
    events = await collect(manager.run("t1", "write:t1/out.png"))
    [error] = [e for e in events if isinstance(e, Error)]
    assert error.ename == "PersistFailed" and "saved again after the next message" in error.evalue
    assert out(events) == "write:t1/out.png" and done(events).status == "ok"
    assert sample(manager, "threadbox_persist_errors_total") == 1
    backend.persist_error = None
    events = await collect(manager.run("t1", "x"))
    assert [e.changed for e in events if isinstance(e, FilesChanged)] == [["out.png"]]


async def test_an_execution_that_changed_no_file_skips_the_sync(make: Any) -> None:
    manager, backend = make()
    await collect(manager.run("t1", "x"))  # the first: the kernel has nothing to compare with
    await collect(manager.run("t1", "y"))
    await collect(manager.run("t1", "write:t1/a.csv"))
    assert [op for op, _ in backend.log if op == "persist"] == ["persist", "persist"]
    assert sample(manager, "threadbox_syncs_skipped_total") == 1
    assert backend.stored["t1"] == {"a.csv": b"data"}


async def test_a_dead_kernel_ends_the_turn_with_its_cause_and_the_next_turn_starts_fresh(make: Any) -> None:
    manager, backend = make()
    backend.death_cause = "it ran out of memory (limit 2 GiB)"
    events = await collect(manager.run("t1", "die"))
    [error] = [e for e in events if isinstance(e, Error)]
    assert error.kind == "kernel_died" and error.evalue.startswith("The kernel stopped: it ran out of memory")
    assert done(events).status == "error" and not manager.is_live("t1")
    assert any(op.startswith("record SandboxStopped: Stopped (died)") for op, _ in backend.log)
    events = await collect(manager.run("t1", "x"))
    assert out(events) == "x" and [op for op, _ in backend.log].count("start") == 2


async def test_a_sandbox_that_cannot_start_ends_the_turn_and_frees_its_slot(make: Any) -> None:
    manager, backend = make(max_sandboxes=1)
    backend.start_error = OSError("no space left on device")
    events = await collect(manager.run("t1", "x"))
    [error] = [e for e in events if isinstance(e, Error)]
    assert error.kind == "sandbox_failed" and "no space left" in error.evalue
    backend.start_error = None
    assert out(await asyncio.wait_for(collect(manager.run("t2", "y")), TIMEOUT)) == "y"


class FakeLease:
    def __init__(self, notes: list[str]) -> None:
        self.notes = notes
        self.released = asyncio.Event()

    async def acquire(self) -> AsyncIterator[str]:
        for note in self.notes:
            yield note

    async def release(self) -> None:
        self.released.set()


async def test_the_lease_is_taken_once_per_turn_and_released_after_the_answer(make: Any) -> None:
    manager, backend = make()
    leases: list[FakeLease] = []

    def lease(thread_id: str) -> FakeLease:
        leases.append(FakeLease(["Another replica is answering in this thread; waiting."]))
        return leases[-1]

    backend.lease = lease
    agent = DirectAgent(manager)
    text = "```python\na\n```\n```python\nb\n```"
    events = await collect(manager.turn("t1", agent.respond(Turn("t1", text))))
    assert len(leases) == 1  # one Lease for both executions
    assert next(e.phase for e in events if isinstance(e, Status)) == "queued"
    await asyncio.wait_for(leases[0].released.wait(), TIMEOUT)
    await manager.close()


async def test_close_persists_every_live_sandbox_and_stops_it(make: Any) -> None:
    manager, backend = make()
    await collect(manager.run("t1", "write:t1/late.txt"))
    backend.sandboxes["t1"].files["after.txt"] = b"written after the turn"
    await manager.close()
    assert backend.stored["t1"] == {"late.txt": b"data", "after.txt": b"written after the turn"}
    assert backend.sandboxes == {}


async def test_a_sandbox_kept_on_release_is_adopted_by_the_next_manager_with_its_kernel(
    make: Any,
) -> None:
    """As pods outlive a controller: the next manager finds the sandbox, restores nothing
    (its files are there) and counts the start as adopted."""
    manager, backend = make()
    backend.keep_on_release = True
    await collect(manager.run("t1", "write:t1/kept.txt"))
    await manager.close()
    assert list(backend.sandboxes) == ["t1"]
    backend.log.clear()
    second = SandboxManager(backend, CONFIG, Metrics(), backend.connect)
    events = await collect(second.run("t1", "again"))
    assert [e.phase for e in events if isinstance(e, Status)] == ["restoring", "ready"]
    assert out(events) == "again" and ("restore", "t1") not in backend.log
    assert [op for op, _ in backend.log].count("start") == 0
    count = "threadbox_sandbox_start_seconds_count"
    assert second.metrics.registry.get_sample_value(count, {"kind": "adopted"}) == 1
    await second.close()


# -- kept kernel state ----------------------------------------------------------------


def state_calls(backend: FakeBackend, thread_id: str) -> list[str]:
    return [
        op for op, tid in backend.log if tid == thread_id and op in ("save state", "persist", "load state")
    ]


async def test_a_reaped_sandbox_saves_its_variables_before_its_files_and_the_next_start_loads_them(
    make: Any,
) -> None:
    manager, backend = make(idle_timeout=0.0, keep_state=True, state_max_bytes=1000)
    await collect(manager.run("t", "x"))
    assert state_calls(backend, "t") == [
        "load state",
        "persist",
    ]  # a new kernel: nothing saved yet, said nothing
    assert await manager.reap_once() == ["t"]
    assert state_calls(backend, "t")[2:] == ["save state", "persist"]
    events = await collect(manager.run("t", "y"))
    assert state_calls(backend, "t")[4:] == ["load state", "persist"] and done(events).status == "ok"
    assert [e.message for e in events if isinstance(e, Status)][-1] == "Sandbox ready."


async def test_no_save_when_the_kernel_died_hung_when_forgotten_or_when_turned_off(make: Any) -> None:
    manager, backend = make(keep_state=True, state_max_bytes=1000)
    await collect(manager.run("died", "die"))
    assert "save state" not in state_calls(backend, "died")
    # Code that ignores the interrupt: a save would wait behind it for its whole timeout.
    events = await collect(manager.run("hung", "hang"))
    assert done(events).status == "aborted" and not manager.is_live("hung")
    assert "save state" not in state_calls(backend, "hung") and state_calls(backend, "hung")[-1] == "persist"
    assert any("its variables were not saved: its code would not stop" in op for op, _ in backend.log)
    await collect(manager.run("forget", "x"))
    assert await manager.forget_state("forget") is True and await manager.forget_state("forget") is False
    assert (
        "save state" not in state_calls(backend, "forget") and state_calls(backend, "forget")[-1] == "persist"
    )
    off, backend = make(idle_timeout=0.0)
    await collect(off.run("off", "x"))
    await off.reap_once()
    assert state_calls(backend, "off") == ["persist", "persist"]
    await manager.close()
    await off.close()


async def test_shutdown_saves_variables_only_where_the_sandbox_stops(make: Any) -> None:
    manager, backend = make(keep_state=True, state_max_bytes=1000)
    await collect(manager.run("t", "x"))
    await manager.close()
    assert state_calls(backend, "t")[-2:] == ["save state", "persist"]
    manager, backend = make(keep_state=True, state_max_bytes=1000)
    backend.keep_on_release = True  # as pods do: the kernel keeps its variables itself
    await collect(manager.run("t", "x"))
    await manager.close()
    assert state_calls(backend, "t")[-2:] == ["persist", "persist"]


async def test_between_turns_a_live_sandbox_saves_variables_then_files_and_its_next_turn_waits(
    make: Any, gates: Gates
) -> None:
    manager, backend = make(keep_state=True, state_max_bytes=1000)
    async with manager.between_turns("t", None) as none:
        assert none is None  # nothing runs: nothing to save
    await collect(manager.run("t", "x"))
    async with manager.between_turns("t", None) as checkpoint:
        assert checkpoint is not None and (checkpoint.files_saved, checkpoint.state_missed) == (True, None)
        assert state_calls(backend, "t")[-2:] == ["save state", "persist"] and manager.is_live("t")
        later = asyncio.create_task(collect(manager.run("t", "after")))
        await until(lambda: manager.turns_waiting("t") == 1, TIMEOUT, 0)  # the code's own signal
        assert "after" not in gates.ran
    assert out(await asyncio.wait_for(later, TIMEOUT)) == "after"
    # A sandbox running with no turn here since (a pod adopted after a restart) is saved too.
    backend.keep_on_release = True
    await manager.close()
    n = len(state_calls(backend, "t"))
    second = SandboxManager(backend, replace(CONFIG, keep_state=True, state_max_bytes=1000), Metrics())
    async with second.between_turns("t", "alice") as checkpoint:
        assert checkpoint is not None and checkpoint.state_missed is None and not second.is_live("t")
        assert state_calls(backend, "t")[n:] == ["save state", "persist"]
    off, _ = make()
    await collect(off.run("t", "x"))
    async with off.between_turns("t", None) as checkpoint:
        assert checkpoint is not None and "THREADBOX_KEEP_STATE=false" in (checkpoint.state_missed or "")
    await second.close()
    await off.close()
