"""The backend interface: where a thread's sandbox (a kernel plus a workspace) runs.

Two implementations: ``local`` (a kernel process per thread) and ``kubernetes``
(a pod per thread). The manager never knows which one it talks to.
Every backend can find a thread's sandbox from durable state alone (a file on
disk, a pod label), so a restarted controller adopts what is running.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from controller.events import Event
from controller.metrics import Metrics
from controller.workspace import PersistResult

# SandboxInfo.extra key: a KernelSession already connected and ready (a warm claim), which
# the manager takes over instead of dialling the kernel and restoring files itself.
WARM_SESSION = "warm_session"


class SandboxStartError(Exception):
    """The sandbox could not be started; the message says why."""


@dataclass
class SandboxInfo:
    thread_id: str
    name: str
    connection: dict[str, Any]
    created: float
    last_active: float
    workspace: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


AliveProbe = Callable[[], Awaitable[bool]]


class Session(Protocol):
    """The manager's connection to one sandbox's kernel (controller/kernel.py's KernelSession)."""

    # "starting", "idle", "busy", "dead" or "unresponsive"; the manager retires the last two
    last_state: str

    async def start(self, timeout: float) -> None:
        """Until the kernel answers; raises KernelUnavailable after ``timeout`` seconds."""

    def execute(self, code: str, timeout: float, grace: float, max_output: int) -> AsyncIterator[Event]:
        """Output events, then exactly one Done."""
        ...

    def close(self) -> None: ...


# How the manager connects to a sandbox: (connection info, liveness probe, output cap).
Connect = Callable[[dict[str, Any], AliveProbe, int], Session]


class TurnLease(Protocol):
    """Orders one thread's turns across controller replicas (see controller/k8s/lease.py)."""

    def acquire(self) -> AsyncIterator[str]:
        """Yields a sentence for the user while another replica holds the thread; ends once held."""
        ...

    async def release(self) -> None: ...


class Backend(Protocol):
    name: str
    # Kubernetes pods outlive a controller restart and get adopted; local kernels do not.
    keep_on_shutdown: bool

    @property
    def isolation(self) -> str:
        """How sandboxes are kept apart, in a sentence for operators (start-up, /readyz)."""
        ...

    @property
    def isolated(self) -> bool:
        """False when code in one sandbox could reach another's (an explicit operator choice)."""
        ...

    async def start(self, thread_id: str) -> SandboxInfo: ...

    async def find(self, thread_id: str) -> SandboxInfo | None: ...

    async def list(self) -> list[SandboxInfo]: ...

    async def alive(self, info: SandboxInfo) -> bool: ...

    async def stop(self, info: SandboxInfo) -> None: ...

    async def restore(self, info: SandboxInfo, user: str | None) -> int:
        """Bring the thread's stored files into the sandbox workspace; returns the count."""

    async def persist(self, info: SandboxInfo, user: str | None) -> PersistResult:
        """Upload what changed in the workspace since the last sync."""

    async def write_file(self, info: SandboxInfo, name: str, data: bytes) -> None:
        """Put an already-stored upload into the live workspace."""

    async def died_of(self, info: SandboxInfo) -> str | None:
        """Why a kernel that died did, when the backend knows for sure (a memory limit)."""

    async def touch(self, info: SandboxInfo) -> None:
        """Record activity durably, so idle reaping survives a controller restart."""

    def turn_lease(self, thread_id: str) -> TurnLease | None:
        """None when only this process can reach the thread's sandbox (its own lock suffices)."""

    async def record(self, info: SandboxInfo, reason: str, message: str, warning: bool = False) -> None:
        """Tell operators what happened to a sandbox, where they look for it (log, pod events)."""


@runtime_checkable
class Lifecycle(Protocol):
    """Optional for a backend: background work (the Kubernetes warm pool) run with the manager."""

    async def open(self, metrics: Metrics) -> None: ...

    async def close(self) -> None: ...
