"""Background tasks with an owner: every task spawned here is awaited or cancelled by drain().

A bare ``asyncio.create_task`` can be garbage-collected while it runs, dies with its
exception unseen, and nothing waits for it at shutdown. Each component that starts work it
does not wait for itself (turns whose reader left, Slack answers, Lease releases) keeps it in
a TaskSet, and shutdown drains them all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TaskSet:
    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("a background task of %s failed", self.name, exc_info=exc)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for every task; those still running after ``timeout`` seconds are cancelled."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._tasks)


def stopping() -> bool:
    """This task was asked to stop, even if the CancelledError never reached its loop.

    On Python 3.11 ``asyncio.wait_for`` returns normally when its awaitable finishes in the
    same moment the task is cancelled, and a client's timeout can turn the cancellation into a
    TimeoutError that ``except`` clauses take for a failure; a loop that retried after either
    never ended (a warm pool's close() waited on it forever in CI). The request stays counted.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def every(seconds: float, work: Callable[[], Awaitable[object]], what: str) -> None:
    """Run ``work`` every ``seconds`` until cancelled; a failed pass is logged and the next one runs."""
    while not stopping():
        await asyncio.sleep(seconds)
        try:
            await work()
        except Exception:
            log.exception("%s failed; trying again in %gs", what, seconds)
