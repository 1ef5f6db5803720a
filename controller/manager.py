"""SandboxManager: gives each thread a ready sandbox and runs its turns in order.

- A turn (an agent's answer to one message, or one /execute) owns its thread from start to
  end: ``turn()`` takes the thread's turn lock once, and on Kubernetes its Lease, so two
  turns of one thread never interleave in any replica, and every execution and history
  write of the turn happens inside. Turns of one thread run in arrival order; threads run
  concurrently.
- ``execute()`` runs one piece of code of the current turn; a shorter per-thread sandbox
  lock orders it against uploads, eviction and reaping.
- At most ``max_sandboxes`` live at once. A new thread first evicts the least recently
  used idle sandbox (persisting it); if every sandbox is busy it waits in a FIFO queue
  and is told its position.
- The reaper stops a sandbox only when no turn runs and none has for ``idle_timeout`` (its
  profile's); it persists first. Shutdown persists everything.
- A sandbox starts with the thread's pinned profile version (``profiles``: runtime.py passes
  the ProfileBook of controller/profiles.py); an upgrade stops it between turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from controller.admission import Admission
from controller.backends.base import Backend, Connect, Dialer, SandboxInfo, SandboxStartError
from controller.config import Settings, subset
from controller.events import Done, Error, Event, Status
from controller.execution import Checkpoint, Executions, Live
from controller.kernel import KernelSession, KernelUnavailable
from controller.metrics import Metrics
from controller.profiles import FixedProfile, Profile, ProfileError, ProfileSource
from controller.stores.base import StoreError
from controller.tasks import TaskSet, every
from controller.threadlocks import ThreadLocks
from controller.turncontext import TurnScope
from controller.usage.accounting import Accounting

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManagerConfig:
    """What the manager needs from Settings, and nothing else (no credentials)."""

    max_sandboxes: int
    idle_timeout: float
    reap_interval: float
    exec_timeout: float
    interrupt_grace: float
    max_output_bytes: int
    start_timeout: float
    keep_state: bool = False
    state_max_bytes: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> ManagerConfig:
        return subset(cls, settings, reap_interval="effective_reap_interval")


class SandboxManager:
    def __init__(
        self,
        backend: Backend[Any],
        config: ManagerConfig,
        metrics: Metrics,
        connect: Connect = KernelSession,
        *,
        profiles: ProfileSource | None = None,  # the pinned versions; None: the server's settings
        accounting: Accounting | None = None,  # usage and budgets of turns
    ) -> None:
        self.backend = backend
        self.config = config
        self.profiles = profiles or FixedProfile.of_server(config.idle_timeout, config.keep_state)
        self.accounting = accounting
        self._dialer = Dialer(connect, config.max_output_bytes, config.start_timeout)
        self._executions = Executions(backend, metrics, config.interrupt_grace, config.max_output_bytes)
        self._executions.state_max, self._executions.keep_state = config.state_max_bytes, config.keep_state
        self.metrics = metrics
        self._live: dict[str, Live] = {}
        self._locks = ThreadLocks(backend)
        evict = functools.partial(self._retire, reason="evicted")
        lru = functools.partial(idle_lru, self._live, self._locks)
        self._slots = Admission(config.max_sandboxes, lru, evict, self._update_gauges)
        self._reaper = TaskSet("the reaper")
        # Turns detached from their readers (controller/streaming.py): shutdown lets them finish.
        self.turns = TaskSet("turns")

    async def start(self) -> None:
        # What runs already is adopted lazily by the turn that needs it, and reaped if idle.
        await self.backend.open(self.metrics)
        self._reaper.spawn(every(self.config.reap_interval, self.reap_once, "a reaper pass"))

    async def close(self) -> None:
        await self.turns.drain()
        await self._reaper.drain(timeout=0)  # cancelled at once
        for thread_id in list(self._live):
            async with self._locks.sandboxes.hold(thread_id):
                live = self._live.pop(thread_id, None)
                if live is None:
                    continue
                reason = "released" if self.backend.keep_on_release else "shutdown"
                await self._executions.before_stop(live.info, live.user, reason)
                live.session.close()
                await self.backend.release(live.info)
        await self._locks.drain()
        await self.backend.close()
        self._update_gauges()

    # -- turns ---------------------------------------------------------------------

    def is_live(self, thread_id: str) -> bool:
        return thread_id in self._live

    def interrupt(self, thread_id: str) -> bool:
        """Stop the thread's running execution as its timeout would; False if none runs here."""
        live = self._live.get(thread_id)
        if live is None or live.session.last_state != "busy":
            return False
        live.session.stop()
        return True

    def turns_waiting(self, thread_id: str) -> int:
        """Turns of the thread queued in this replica behind the one running."""
        return self._locks.turns.waiting(thread_id)

    async def turn(self, thread_id: str, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        """Relay ``events`` (an agent's answer, or one execution) as the thread's one turn.

        Waits for the thread's earlier turns, here and (Lease) in other replicas; queued
        meanwhile, it says so. ``events`` starts only once the turn is held.
        """
        events = self.accounting.turn(thread_id, events) if self.accounting else events
        try:
            with TurnScope(thread_id, self.metrics) as scope:
                async with self._locks.turns.hold(thread_id):
                    lease = self.backend.turn_lease(thread_id)
                    async for note in lease.acquire():
                        yield Status(phase="queued", message=note)
                    try:
                        async for event in events:
                            scope.saw(event)
                            yield event
                    finally:
                        self._locks.release_later(lease)
        finally:
            self._slots.changed()  # this sandbox may now be idle: queued threads can evict it

    def run(
        self, thread_id: str, code: str, user: str | None = None, timeout: float | None = None
    ) -> AsyncIterator[Event]:
        """One turn that runs ``code`` (the API's /execute); the last event is always Done."""
        return self.turn(thread_id, self.execute(thread_id, code, user, timeout))

    async def execute(
        self, thread_id: str, code: str, user: str | None = None, timeout: float | None = None
    ) -> AsyncIterator[Event]:
        """Run ``code`` within the thread's current turn; the last event is always Done."""
        if not self._locks.turns.locked(thread_id):
            raise RuntimeError(f"execute() outside a turn of thread {thread_id}")
        try:
            async with self._locks.sandboxes.hold(thread_id):
                async for event in self._run_code(thread_id, code, user, timeout):
                    yield event
        finally:
            self._slots.changed()

    async def _run_code(
        self, thread_id: str, code: str, user: str | None, timeout: float | None
    ) -> AsyncIterator[Event]:
        try:
            async for status in self._ensure(thread_id, user):
                yield status
        # OSError: a host call of the backend failed (spawn, cgroup, disk); the turn still ends well.
        except (SandboxStartError, KernelUnavailable, StoreError, ProfileError, OSError) as exc:
            yield Error(kind="sandbox_failed", ename=type(exc).__name__, evalue=str(exc))
            yield Done(status="error")
            self.metrics.executions.labels("sandbox_failed").inc()
            return
        live = self._live[thread_id]
        async for event in self._execute(live, code, timeout or self.config.exec_timeout):
            yield event

    async def _execute(self, live: Live, code: str, timeout: float) -> AsyncIterator[Event]:
        async for event in self._executions.run(live, code, timeout):
            if isinstance(event, Done):
                if live.session.last_state in ("dead", "unresponsive"):
                    reason = "died" if live.session.last_state == "dead" else "timeout"
                    # execute() holds the thread's sandbox lock
                    await self._retire(live.info.thread_id, reason, locked=True)
                else:
                    await self.backend.touch(live.info)
            yield event

    # -- acquiring a sandbox -----------------------------------------------------------

    async def _ensure(self, thread_id: str, user: str | None) -> AsyncIterator[Status]:
        live = self._live.get(thread_id)
        if live is not None:
            if await self.backend.alive(live.info):
                live.user = user or live.user
                return
            await self._retire(thread_id, "died", locked=True)
        started = time.monotonic()
        pinned = asyncio.to_thread(self.profiles.of, thread_id)  # pinned at the first start
        profile, info = await asyncio.gather(pinned, self.backend.find(thread_id))
        async for status in self._slots.admit():
            yield status
        try:
            if info is None:
                yield Status(phase="starting", message="Starting a sandbox for this thread...")
                info = await self.backend.start(thread_id, profile)
            info.profile = profile  # an adopted one runs its pin too: an upgrade stops the old
            if info.kind != "warm":  # a warm claim comes with its kernel started and files restored
                yield Status(phase="restoring", message="Restoring this thread's files...")
            session = await self.backend.ready(info, user, self._dialer)
        except BaseException as exc:
            self._slots.release()
            await undo_start(self.backend, self.metrics, info, counted=isinstance(exc, Exception))
            if isinstance(exc, SandboxStartError) and self.profiles.outdated(profile):
                raise SandboxStartError(f"{exc}. {upgrade_hint(profile)}") from exc
            raise
        self._live[thread_id] = Live(info, session, user)
        self._update_gauges()
        # The first probe pins the kernel this session talks to (a pod relaunches a kernel that
        # exits): made now, a kernel that dies in the first turn is never mistaken for this one.
        await asyncio.gather(self.backend.touch(info), self.backend.alive(info))
        if note := await self._executions.load_state(info):
            yield Status(phase="restoring", message=note)
        self.metrics.start_seconds.labels(info.kind).observe(time.monotonic() - started)
        yield Status(phase="ready", message="Sandbox ready.")

    async def _retire(self, thread_id: str, reason: str, locked: bool = False) -> bool:
        """Persist and stop a thread's sandbox; False if none runs here. ``locked``: lock held."""
        lock = contextlib.nullcontext() if locked else self._locks.sandboxes.hold(thread_id)
        async with lock:
            live = self._live.pop(thread_id, None)
            if live is None:
                return False
            live.session.close()
            try:
                await self._shut(live.info, live.user, reason)
            finally:  # a slot kept by a failed stop would queue new threads forever
                self._slots.release()
        return True

    async def _shut(self, info: SandboxInfo, user: str | None, reason: str) -> None:
        """Persist (unless the sandbox died), say so where operators look, and stop it."""
        saved = await self._executions.before_stop(info, user, reason)
        await self.backend.record(info, "SandboxStopped", f"Stopped ({reason}); {saved}.", reason == "died")
        await self.backend.stop(info)
        self.metrics.reaped.labels(reason).inc()

    # -- reaping (idle_timeout: the sandbox's profile's) ----------------------------------

    async def reap_once(self) -> list[str]:
        now, default = time.time(), self.config.idle_timeout
        reaped = []
        for thread_id, live in list(self._live.items()):
            if not self._locks.busy(thread_id) and idle_past(live, now, default):  # busy: checked now
                await self._retire(thread_id, "idle")
                reaped.append(thread_id)
        for info in await self.backend.list():
            # Running but not ours (adopted after a restart, never used since): same rule.
            if info.thread_id not in self._live and now - info.last_active >= info.idle_timeout(default):
                async with self._locks.sandboxes.hold(info.thread_id):
                    if info.thread_id in self._live or self._locks.turns.locked(info.thread_id):
                        continue
                    await self._shut(info, None, "idle")
                    reaped.append(info.thread_id)
        return reaped

    async def stop_between_turns(self, thread_id: str, reason: str) -> bool:
        """Save (as idle reaping does) and stop the thread's sandbox, here or adopted; False if none ran."""
        async with self._locks.between_turns(thread_id):
            if await self._retire(thread_id, reason, locked=True):
                return True
            info = await self.backend.find(thread_id)
            if info is not None:
                await self._shut(info, None, reason)
            return info is not None

    async def stop_thread(self, thread_id: str) -> None:
        await self._retire(thread_id, "deleted")
        if (info := await self.backend.find(thread_id)) is not None:  # not live here: adopted, or elsewhere
            await self.backend.stop(info)

    async def forget_state(self, thread_id: str) -> bool:
        """Stop the thread's sandbox here, saving its files but not its variables; False if none ran."""
        async with self._locks.turns.hold(thread_id):
            return await self._retire(thread_id, "forget")

    @contextlib.asynccontextmanager
    async def between_turns(self, thread_id: str, user: str | None) -> AsyncIterator[Checkpoint | None]:
        """Hold the thread between two of its turns (ThreadLocks.between_turns), so that a copy
        of its storage is of one moment. A sandbox of it that runs saves its variables and files
        first; the checkpoint says how that went (None: none runs). ``user``: its owner."""
        async with self._locks.between_turns(thread_id):
            yield await self._executions.checkpoint(self._live.get(thread_id), thread_id, user)

    async def write_file(self, thread_id: str, name: str, data: bytes) -> None:
        """Copy an already-stored file into the live sandbox, if there is one."""
        async with self._locks.sandboxes.hold(thread_id):
            live = self._live.get(thread_id)
            if live is not None:
                await self.backend.write_file(live.info, name, data)

    def _update_gauges(self) -> None:
        self.metrics.live.set(len(self._live))
        self.metrics.queue.set(self._slots.queued)


async def undo_start(
    backend: Backend[Any], metrics: Metrics, info: SandboxInfo | None, counted: bool
) -> None:
    """After a failed start: counted (unless cancelled), and stopped unless it was adopted."""
    if counted:
        metrics.start_failures.labels(info.kind if info is not None else "cold").inc()
    if info is not None and info.kind != "adopted":
        await backend.stop(info)


def idle_lru(live: dict[str, Live], locks: ThreadLocks) -> str | None:
    """The thread whose sandbox, idle with no turn, was used the longest time ago."""
    idle = [
        (sandbox.info.last_active, tid)
        for tid, sandbox in live.items()
        if not locks.busy(tid) and sandbox.session.last_state == "idle"
    ]
    return min(idle)[1] if idle else None


def idle_past(live: Live, now: float, default: float) -> bool:
    """The sandbox's kernel is idle, and has been unused for its profile's idle timeout."""
    return live.session.last_state == "idle" and now - live.info.last_active >= live.info.idle_timeout(
        default
    )


def upgrade_hint(profile: Profile) -> str:
    """Said when a thread's pinned, older profile version cannot start (its image removed, say)."""
    return (
        f"This thread runs an older version of profile {profile.name} (image {profile.image}). "
        "The `upgrade` chat command, or POST /threads/{id}/upgrade, moves it to the current "
        "version with its files and variables."
    )
