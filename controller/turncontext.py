"""What a turn is, for logs and metrics: its thread, its own id and its front-end.

The ids live in context variables, so every log line of a turn says which turn it is
(controller/logsetup.py adds them) without passing them down: tasks and ``asyncio.to_thread``
calls started during the turn inherit them. The front-end comes from the thread id's prefix
(controller/identity.py), so metrics can be labelled by it without a thread id in any label.
"""

from __future__ import annotations

import logging
import secrets
import time
from contextvars import ContextVar
from types import TracebackType

from controller.events import Done, Error, Event
from controller.identity import is_thread_id
from controller.metrics import Metrics

log = logging.getLogger(__name__)

THREAD: ContextVar[str | None] = ContextVar("threadbox_thread", default=None)
TURN: ContextVar[str | None] = ContextVar("threadbox_turn", default=None)
FRONTEND: ContextVar[str | None] = ContextVar("threadbox_frontend", default=None)


def frontend_of(thread_id: str) -> str:
    """``api``, ``slack``...: the source slug every thread id starts with; ``other`` if none."""
    return thread_id.split("-", 1)[0] if is_thread_id(thread_id) else "other"


class TurnScope:
    """One turn from arrival to end: sets the context variables, counts it when it ends."""

    def __init__(self, thread_id: str, metrics: Metrics) -> None:
        self.frontend = frontend_of(thread_id)
        self.metrics = metrics
        self.started = time.monotonic()
        self.done: Done | None = None
        # Set, not reset with tokens: a generator may be closed from another context than its own.
        THREAD.set(thread_id)
        TURN.set(secrets.token_hex(6))
        FRONTEND.set(self.frontend)

    def saw(self, event: Event) -> None:
        if isinstance(event, Error):
            self.metrics.turn_errors.labels(self.frontend, event.kind).inc()
        elif isinstance(event, Done):
            self.done = event

    def __enter__(self) -> TurnScope:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end(failed=kind is not None and issubclass(kind, Exception))  # not a cancellation

    def end(self, failed: bool) -> None:
        """``failed``: the turn raised; without a Done it was cut off (aborted)."""
        status = "failed" if failed else self.done.status if self.done else "aborted"
        seconds = time.monotonic() - self.started
        self.metrics.turns.labels(self.frontend, status).inc()
        self.metrics.turn_seconds.labels(self.frontend).observe(seconds)
        log.info("turn ended: %s after %.3fs", status, seconds)
        for var in (THREAD, TURN, FRONTEND):
            var.set(None)
