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
    """Yield ``events`` from a task held in ``owner`` until it ends (SandboxManager.close awaits them)."""
    queue: asyncio.Queue[object] = asyncio.Queue(QUEUE_EVENTS)
    reader_gone = False

    async def pump() -> None:
        try:
            async for event in events:
                if not reader_gone:
                    await queue.put(event)
        except Exception:
            if not reader_gone:
                raise  # to the reader, below
            log.exception("a turn failed after its reader had gone")
        finally:
            if not reader_gone:
                await queue.put(_END)
            owner.discard(task)

    task = asyncio.create_task(pump())
    owner.add(task)
    finished = False
    try:
        while (item := await queue.get()) is not _END:
            yield item  # type: ignore[misc]
        finished = True
        await task  # re-raise a producer failure to the reader
    finally:
        if not finished:
            reader_gone = True
            while not queue.empty():  # frees a producer waiting to put, which then sees the reader gone
                queue.get_nowait()


def ndjson(event: Event) -> bytes:
    return event.model_dump_json().encode() + b"\n"


def sse(event: Event) -> bytes:
    return f"event: {event.type}\ndata: {json.dumps(event.model_dump())}\n\n".encode()
