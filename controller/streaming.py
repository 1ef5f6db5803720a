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

log = logging.getLogger(__name__)

QUEUE_EVENTS = 64
_END = object()


async def detached(events: AsyncIterator[Event], owner: set[asyncio.Task[None]]) -> AsyncIterator[Event]:
    """Yield ``events`` from a task added to ``owner``, which shutdown awaits (see SandboxManager.close)."""
    queue: asyncio.Queue[object] = asyncio.Queue(QUEUE_EVENTS)
    reader_gone = False

    async def pump() -> None:
        try:
            async for event in events:
                if not reader_gone:
                    await queue.put(event)
        finally:
            if not reader_gone:
                await queue.put(_END)

    task = asyncio.create_task(pump())
    owner.add(task)
    task.add_done_callback(lambda done: _forget(owner, done, reader_gone))
    try:
        while (item := await queue.get()) is not _END:
            yield item  # type: ignore[misc]
        await task  # re-raise a producer failure to the reader
    finally:
        reader_gone = True
        while not queue.empty():  # frees a producer waiting to put, which then sees the reader gone
            queue.get_nowait()


def _forget(owner: set[asyncio.Task[None]], task: asyncio.Task[None], reader_gone: bool) -> None:
    owner.discard(task)
    if reader_gone and not task.cancelled() and (exc := task.exception()) is not None:
        log.error("a turn failed after its reader had gone", exc_info=exc)


def ndjson(event: Event) -> bytes:
    return event.model_dump_json().encode() + b"\n"


def sse(event: Event) -> bytes:
    return f"event: {event.type}\ndata: {json.dumps(event.model_dump())}\n\n".encode()
