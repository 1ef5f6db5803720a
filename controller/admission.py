"""Admission: at most ``slots`` sandboxes live at once; new threads wait in one FIFO queue.

The first in the queue takes a free slot, or frees one by evicting the least recently used
idle sandbox (the manager chooses and evicts); otherwise it waits, told its position each
time it changes. Anything that may free a slot or make a sandbox idle calls ``changed()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from controller.events import Status


class Admission:
    def __init__(
        self,
        slots: int,
        idle_victim: Callable[[], str | None],
        evict: Callable[[str], Awaitable[object]],
        on_change: Callable[[], None],
    ) -> None:
        self.slots = slots
        self.used = 0
        self._idle_victim = idle_victim
        self._evict = evict
        self._on_change = on_change  # gauges
        self._waiting: list[object] = []
        self._changed = asyncio.Event()

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def changed(self) -> None:
        self._changed.set()

    def release(self) -> None:
        """A sandbox stopped, or never started: its slot is free."""
        self.used -= 1
        self._changed.set()
        self._on_change()

    async def admit(self) -> AsyncIterator[Status]:
        """Ends holding a slot (``release()`` it); yields a queued Status while it waits."""
        token = object()
        self._waiting.append(token)
        self._on_change()
        try:
            reported = None
            while True:
                if self._waiting[0] is token:
                    if self.used < self.slots:
                        self.used += 1
                        return
                    victim = self._idle_victim()
                    if victim is not None:
                        await self._evict(victim)
                        continue
                position = self._waiting.index(token) + 1
                if position != reported:
                    reported = position
                    yield Status(
                        phase="queued",
                        message=f"All {self.slots} sandboxes are busy; you are number {position} in the queue.",
                        queue_position=position,
                    )
                self._changed.clear()
                await self._changed.wait()
        finally:
            self._waiting.remove(token)
            self._changed.set()
            self._on_change()
