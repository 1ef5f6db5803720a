"""A watchdog of the event loop: how late it wakes, and what blocked it.

A task on the loop sleeps ``period`` and records how much later than asked it woke
(``threadbox_event_loop_lag_seconds``). A lag measured that way is only known once the loop
runs again, so a thread beside it also checks the task's last beat: if the loop has not
beaten for ``warn_after`` seconds, it logs the loop thread's stack while it is still blocked,
once per stall. That is how a hang (a blocking call on the loop) gets diagnosed, even one
that never ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
import traceback

from prometheus_client import Histogram

log = logging.getLogger(__name__)

PERIOD = 0.1
WARN_AFTER = 0.5


class LoopWatch:
    def __init__(self, lag: Histogram, period: float = PERIOD, warn_after: float = WARN_AFTER) -> None:
        self.lag = lag
        self.period = period
        self.warn_after = warn_after
        self._beat = time.monotonic()
        self._loop_thread = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="loopwatch", daemon=True)

    async def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._task = asyncio.create_task(self._run())
        self._thread.start()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._stop.set()
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join, 5)

    async def _run(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(self.period)
            self._beat = time.monotonic()
            self.lag.observe(max(0.0, self._beat - asked - self.period))

    def _watch(self) -> None:
        reported = None
        while not self._stop.wait(self.period / 2):
            beat = self._beat
            stalled = time.monotonic() - beat
            if stalled > self.warn_after and beat != reported:
                reported = beat
                log.warning(
                    "the event loop has not run for %.2fs; it is blocked here:\n%s",
                    stalled,
                    self._loop_stack(),
                )

    def _loop_stack(self) -> str:
        frame = sys._current_frames().get(self._loop_thread)
        return "".join(traceback.format_stack(frame)) if frame is not None else "(loop thread gone)"
