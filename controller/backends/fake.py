"""An in-tree fake backend, in the spirit of httpx's MockTransport: no process, no pod, no kernel.

Code "runs" through a script, an async function of the code that yields events and can wait
on test-controlled signals, so tests of ordering, queueing, eviction, reaping, persist
failures and dead kernels are exact and fast. ``FakeBackend.connect`` is the manager's
``connect``: ``SandboxManager(fake, config, metrics, connect=fake.connect)``. A controller
restart is played by a new manager on the same backend: what it still holds is adopted.

Every backend operation is appended to ``log`` as ``(operation, thread_id)``, so a test can
assert what happened and in which order (persist before stop, evict before start).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from controller.backends.base import (
    AliveProbe,
    Dialer,
    NoLease,
    SandboxInfo,
    SandboxStartError,
    Session,
    TurnLease,
)
from controller.events import Done, Error, Event, Stream
from controller.kernel import RESTART_NOTE
from controller.kernelstate import Saved
from controller.metrics import Metrics
from controller.profiles import Profile
from controller.workspace import PersistResult

Script = Callable[[str], AsyncIterator[Event]]


class KernelDies(Exception):
    """Raised by a script: the kernel process is gone from here on."""


class KernelHangs(Exception):
    """Raised by a script: its code would not stop when interrupted (the kernel is restarted)."""


async def echo(code: str) -> AsyncIterator[Event]:
    """The default script: prints the code back."""
    yield Stream(type="stdout", text=code)


@dataclass
class FakeSandbox:
    info: SandboxInfo
    files: dict[str, bytes] = field(default_factory=dict)
    alive: bool = True


class FakeSession:
    """A kernel session whose executions are the backend's script."""

    def __init__(self, backend: FakeBackend, sandbox: FakeSandbox) -> None:
        self.backend = backend
        self.sandbox = sandbox
        self.last_state = "starting"
        self.workspace_changed: bool | None = None
        self._seen: dict[str, bytes] | None = None  # the files at the last execution's end

    async def start(self, timeout: float) -> None:
        self.last_state = "idle"

    async def execute(self, code: str, timeout: float, grace: float, max_output: int) -> AsyncIterator[Event]:
        started, count = time.monotonic(), next(self.backend.counter)
        self.last_state = "busy"
        self.workspace_changed = None
        events = self.backend.script(code)
        try:
            async with asyncio.timeout(timeout):
                async for event in events:
                    yield event
        except TimeoutError:
            yield Error(
                kind="timeout", ename="TimeoutError", evalue=f"Execution timed out after {timeout:g}s."
            )
            self.last_state = "idle"
            yield Done(status="aborted", execution_count=count, seconds=time.monotonic() - started)
            return
        except KernelHangs:
            self.last_state = "unresponsive"
            yield Error(kind="timeout", ename="TimeoutError", evalue="The interrupt did not stop it.")
            yield Done(status="aborted", execution_count=count, seconds=time.monotonic() - started)
            return
        except KernelDies:
            self.sandbox.alive = False
            self.last_state = "dead"
            yield Error(
                kind="kernel_died", ename="DeadKernelError", evalue=f"The kernel stopped. {RESTART_NOTE}"
            )
            yield Done(status="error", execution_count=count, seconds=time.monotonic() - started)
            return
        self.last_state = "idle"
        # As the kernel's changes.py answers: against the files at the previous answer.
        self.workspace_changed = self.sandbox.files != self._seen
        self._seen = dict(self.sandbox.files)
        yield Done(status="ok", execution_count=count, seconds=time.monotonic() - started)

    def stop(self) -> None:
        self.backend.log.append(("stop", self.sandbox.info.thread_id))

    def close(self) -> None:
        self.backend.log.append(("close", self.sandbox.info.thread_id))


class FakeBackend:
    name = "fake"
    isolation = "none: the fake backend runs no code"
    isolated = True

    def __init__(self, script: Script = echo) -> None:
        self.script = script
        self.sandboxes: dict[str, FakeSandbox] = {}
        self.stored: dict[str, dict[str, bytes]] = {}  # what persist saved, by thread
        self.log: list[tuple[str, str]] = []
        self.profiles: dict[str, Profile] = {}  # the profile each thread's last sandbox started with
        self.counter = itertools.count(1)
        self.start_error: Exception | None = None
        self.persist_error: Exception | None = None
        self.death_cause: str | None = None
        self.lease: Callable[[str], TurnLease] | None = None
        self.keep_on_release = False  # True: sandboxes outlive the manager, as pods do

    def connect(self, connection: dict[str, Any], alive: AliveProbe, max_output: int) -> FakeSession:
        return FakeSession(self, self.sandboxes[connection["thread_id"]])

    async def open(self, metrics: Metrics) -> None:
        self.log.append(("open", ""))

    async def close(self) -> None:
        self.log.append(("close backend", ""))

    async def start(self, thread_id: str, profile: Profile) -> SandboxInfo:
        self.log.append(("start", thread_id))
        self.profiles[thread_id] = profile
        if self.start_error is not None:
            raise SandboxStartError(str(self.start_error)) from self.start_error
        now = time.time()
        info = SandboxInfo(thread_id, f"fake-{thread_id}", {"thread_id": thread_id}, now, now)
        self.sandboxes[thread_id] = FakeSandbox(info)
        return info

    async def find(self, thread_id: str) -> SandboxInfo | None:
        sandbox = self.sandboxes.get(thread_id)
        return replace(sandbox.info, kind="adopted") if sandbox else None

    async def list(self) -> list[SandboxInfo]:
        return [replace(s.info, kind="adopted") for s in self.sandboxes.values()]

    async def ready(self, info: SandboxInfo, user: str | None, dialer: Dialer) -> Session:
        restore = functools.partial(self.restore, info, user)
        return await dialer.ready(info, functools.partial(self.alive, info), restore)

    async def alive(self, info: SandboxInfo) -> bool:
        sandbox = self.sandboxes.get(info.thread_id)
        return sandbox is not None and sandbox.alive

    async def stop(self, info: SandboxInfo) -> None:
        self.log.append(("stop", info.thread_id))
        self.sandboxes.pop(info.thread_id, None)

    async def release(self, info: SandboxInfo) -> None:
        if not self.keep_on_release:
            await self.stop(info)

    async def restore(self, info: SandboxInfo, user: str | None) -> int:
        self.log.append(("restore", info.thread_id))
        files = dict(self.stored.get(info.thread_id, {}))
        self.sandboxes[info.thread_id].files = files
        return len(files)

    async def persist(self, info: SandboxInfo, user: str | None) -> PersistResult:
        self.log.append(("persist", info.thread_id))
        if self.persist_error is not None:
            raise self.persist_error
        files = self.sandboxes[info.thread_id].files
        before = self.stored.get(info.thread_id, {})
        changed = sorted(n for n, data in files.items() if before.get(n) != data)
        self.stored[info.thread_id] = dict(files)
        return PersistResult(changed=changed, bytes=sum(len(files[n]) for n in changed))

    async def write_file(self, info: SandboxInfo, name: str, data: bytes) -> None:
        self.sandboxes[info.thread_id].files[name] = data

    async def save_state(self, info: SandboxInfo, cap: int, user: str | None = None) -> Saved:
        self.log.append(("save state", info.thread_id))
        return Saved(cap=cap)

    async def load_state(self, info: SandboxInfo, cap: int) -> str | None:
        self.log.append(("load state", info.thread_id))
        return None

    async def died_of(self, info: SandboxInfo) -> str | None:
        return self.death_cause

    async def touch(self, info: SandboxInfo) -> None:
        info.last_active = time.time()

    def turn_lease(self, thread_id: str) -> TurnLease:
        return self.lease(thread_id) if self.lease else NoLease()

    async def record(self, info: SandboxInfo, reason: str, message: str, warning: bool = False) -> None:
        self.log.append((f"record {reason}: {message}", info.thread_id))
