"""Run a turn to completion in its own task, whatever happens to the reader.

A client that disconnects (or a Slack handler that gives up) must not cut a turn
short before its files are persisted, so the producer never depends on the consumer
being there. While the reader is there, a small queue between them makes a slow reader
slow the producer down (and, through ZeroMQ, the kernel) instead of piling events up in
the controller; once the reader has gone, the turn runs on and its events are dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

from controller.events import Event
from controller.tasks import TaskSet

log = logging.getLogger(__name__)

QUEUE_EVENTS = 64
_END = object()


async def detached(events: AsyncIterator[Event], owner: TaskSet) -> AsyncIterator[Event]:
    """Yield ``events`` from a task of ``owner`` until it ends (SandboxManager.close drains them)."""
    queue: asyncio.Queue[object] = asyncio.Queue(QUEUE_EVENTS)
    reader_gone = False

    async def pump() -> None:
        outcome: object = _END
        try:
            async for event in events:
                if not reader_gone:
                    await queue.put(event)
        except Exception as exc:
            if reader_gone:
                log.exception("a turn failed after its reader had gone")
            outcome = exc  # raised to the reader, below
        finally:
            if not reader_gone:
                await queue.put(outcome)

    owner.spawn(pump())
    finished = False
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, Exception):
                raise item
            yield item  # type: ignore[misc]
        finished = True
    finally:
        if not finished:
            reader_gone = True
            while not queue.empty():  # frees a producer waiting to put, which then sees the reader gone
                queue.get_nowait()


def ndjson(event: Event) -> bytes:
    return event.model_dump_json().encode() + b"\n"


def sse(event: Event) -> bytes:
    return f"event: {event.type}\ndata: {json.dumps(event.model_dump())}\n\n".encode()
