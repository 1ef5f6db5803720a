"""Run a reply's flush when it has something new, at most once per interval.

A flush that did not get everything out (rate budget, a failed call) returns False
and is tried again after the next interval. Stopping never cuts a flush short: the
``ts`` of a message being posted would be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable


class Throttled:
    def __init__(self, flush: Callable[[], Awaitable[bool]], interval: float) -> None:
        self.flush = flush
        self.interval = interval
        self.lock = asyncio.Lock()  # held by every flush, the final one included
        self._dirty = asyncio.Event()
        self._last = 0.0
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        self._dirty.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(max(0.0, self._last + self.interval - time.monotonic()))
            self._dirty.clear()
            self._last = time.monotonic()
            async with self.lock:
                done = await self.flush()
            if not done:
                self._dirty.set()

    async def stop(self) -> None:
        if self._task is None:
            return
        async with self.lock:
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
