"""How work on one thread is ordered (controller/manager.py's SandboxManager uses these).

- The turn lock: a turn holds it from its start to its end, so two turns of one thread never
  interleave in this replica; across replicas, the backend's turn Lease does the same.
- The sandbox lock: one execution, upload or stop of the thread's sandbox at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from controller.backends.base import Backend, TurnLease
from controller.keyedlock import KeyedLock
from controller.tasks import TaskSet


class ThreadLocks:
    def __init__(self, backend: Backend[Any]) -> None:
        self.turns = KeyedLock()
        self.sandboxes = KeyedLock()
        self._backend = backend
        self._releasing = TaskSet("turn lease releases")

    def busy(self, thread_id: str) -> bool:
        """A turn runs (between its executions too), or an execution or upload does."""
        return self.turns.locked(thread_id) or self.sandboxes.locked(thread_id)

    def release_later(self, lease: TurnLease) -> None:
        # The answer need not wait for the API server. A next turn of this thread in this
        # replica meanwhile finds the Lease still its own and takes it again.
        self._releasing.spawn(lease.release())

    async def drain(self) -> None:
        """Wait for the Lease releases under way (at shutdown)."""
        await self._releasing.drain()

    @asynccontextmanager
    async def between_turns(self, thread_id: str) -> AsyncIterator[None]:
        """Hold the thread as a turn does (its Lease included) and its sandbox lock: no turn,
        execution or upload of it starts until the block ends."""
        async with self.turns.hold(thread_id):
            lease = self._backend.turn_lease(thread_id)
            async for _ in lease.acquire():  # behind another replica's turn: wait as a turn would
                pass
            try:
                async with self.sandboxes.hold(thread_id):
                    yield
            finally:
                self.release_later(lease)
