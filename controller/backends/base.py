"""The backend interface: where a thread's sandbox (a kernel plus a workspace) runs.

Two implementations: ``local`` (a kernel process per thread) and ``kubernetes``
(a pod per thread), and an in-tree fake (``fake.py``) for tests. The manager never knows
which one it talks to.
Every backend can find a thread's sandbox from durable state alone (a file on
disk, a pod label), so a restarted controller adopts what is running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from controller.events import Event
from controller.kernelstate import Saved
from controller.metrics import Metrics
from controller.profiles import Profile
from controller.workspace import PersistResult


class SandboxStartError(Exception):
    """The sandbox could not be started; the message says why."""


# cold: started for this turn; warm: claimed ready-made; adopted: found already running
Kind = Literal["cold", "warm", "adopted"]


@dataclass
class SandboxInfo:
    """What every backend knows of a sandbox; each backend's subclass adds its own handles
    (a pid, a pod's UID and IP), typed, which only that backend reads."""

    thread_id: str
    name: str
    connection: dict[str, Any]
    created: float
    last_active: float
    workspace: Path | None = None
    kind: Kind = "cold"
    # The profile version it was started with; the manager sets it (None: adopted, not yet used).
    profile: Profile | None = None

    def idle_timeout(self, default: float) -> float:
        return self.profile.idle_timeout if self.profile is not None else default


AliveProbe = Callable[[], Awaitable[bool]]


class Session(Protocol):
    """The manager's connection to one sandbox's kernel (controller/kernel.py's KernelSession)."""

    # "starting", "idle", "busy", "dead" or "unresponsive"; the manager retires the last two
    last_state: str
    # After an execution: whether it changed the workspace, None when the kernel could not say.
    workspace_changed: bool | None

    async def start(self, timeout: float) -> None:
        """Until the kernel answers; raises KernelUnavailable after ``timeout`` seconds."""

    def execute(self, code: str, timeout: float, grace: float, max_output: int) -> AsyncIterator[Event]:
        """Output events, then exactly one Done."""
        ...

    def stop(self) -> None:
        """Interrupt the running execution as its timeout would (a user's Stop)."""

    def close(self) -> None: ...


# How to connect to a sandbox's kernel: (connection info, liveness probe, output cap).
Connect = Callable[[dict[str, Any], AliveProbe, int], Session]


@dataclass(frozen=True)
class Dialer:
    """The manager's way to a ready kernel session, handed to ``Backend.ready``."""

    connect: Connect
    max_output: int
    start_timeout: float

    async def ready(
        self, info: SandboxInfo, alive: AliveProbe, restore: Callable[[], Awaitable[int]]
    ) -> Session:
        """A started session; a cold sandbox's ``restore`` (its files) runs while its kernel
        starts, an adopted one has its files already."""
        session = self.connect(info.connection, alive, self.max_output)
        restoring = [restore()] if info.kind == "cold" else []
        try:
            await asyncio.gather(session.start(self.start_timeout), *restoring)
        except BaseException:
            session.close()
            raise
        return session


class TurnLease(Protocol):
    """Orders one thread's turns across controller replicas (see controller/k8s/lease.py)."""

    def acquire(self) -> AsyncIterator[str]:
        """Yields a sentence for the user while another replica holds the thread; ends once held."""
        ...

    async def release(self) -> None: ...


class NoLease:
    """For a backend whose sandboxes only this process reaches: the manager's own lock suffices."""

    async def acquire(self) -> AsyncIterator[str]:
        return
        yield  # an async generator that yields nothing

    async def release(self) -> None:
        return None


Info = TypeVar("Info", bound=SandboxInfo)


class Backend(Protocol[Info]):
    """Where sandboxes run. Every method is every backend's: the manager never asks which it holds."""

    name: str
    # ``release`` leaves sandboxes running for the next controller (their kernels keep their variables)
    keep_on_release: bool

    @property
    def isolation(self) -> str:
        """How sandboxes are kept apart, in a sentence for operators (start-up, /readyz)."""
        ...

    @property
    def isolated(self) -> bool:
        """False when code in one sandbox could reach another's (an explicit operator choice)."""
        ...

    async def open(self, metrics: Metrics) -> None:
        """Before the first turn: background work (the warm pool), leftovers of a crash handled."""

    async def close(self) -> None:
        """After the last turn."""

    async def start(self, thread_id: str, profile: Profile) -> Info:
        """A new sandbox for the thread, of its profile version (``kind`` cold, or warm when
        claimed ready-made)."""
        ...

    async def find(self, thread_id: str) -> Info | None:
        """The thread's running sandbox (``kind`` adopted), from durable state alone."""

    async def list(self) -> list[Info]: ...

    async def ready(self, info: Info, user: str | None, dialer: Dialer) -> Session:
        """A session to the sandbox's started kernel, with a new sandbox's files restored."""
        ...

    async def alive(self, info: Info) -> bool: ...

    async def stop(self, info: Info) -> None: ...

    async def release(self, info: Info) -> None:
        """This controller is stopping: stop the sandbox, or leave it running for the next one."""

    async def persist(self, info: Info, user: str | None) -> PersistResult:
        """Upload what changed in the workspace since the last sync."""
        ...

    async def write_file(self, info: Info, name: str, data: bytes) -> None:
        """Put an already-stored upload into the live workspace."""

    async def save_state(self, info: Info, cap: int, user: str | None = None) -> Saved:
        """Have the kernel save its variables (at most ``cap`` bytes, and what the byte quotas
        leave: ``user``'s too, when known) to the thread's storage, from inside the sandbox
        (controller/kernelstate.py); raises StateError if it did not."""
        ...

    async def load_state(self, info: Info, cap: int) -> str | None:
        """Load the thread's saved variables in a new sandbox's kernel; the line for the user.
        ``cap``: what later saves may take (a pod saves by itself on SIGTERM)."""
        ...

    async def died_of(self, info: Info) -> str | None:
        """Why a kernel that died did, when the backend knows for sure (a memory limit)."""

    async def touch(self, info: Info) -> None:
        """Record activity durably, so idle reaping survives a controller restart."""

    def turn_lease(self, thread_id: str) -> TurnLease:
        """Orders the thread's turns across replicas (``NoLease`` where only one process can)."""
        ...

    async def record(self, info: Info, reason: str, message: str, warning: bool = False) -> None:
        """Tell operators what happened to a sandbox, where they look for it (log, pod events)."""
