"""Run a turn to completion in its own task, whatever happens to the reader.

A client that disconnects (or a Slack handler that gives up) must not cut a turn
short before its files are persisted, so the producer never depends on the consumer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from controller.events import Event

_END = object()


async def detached(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in events:
                queue.put_nowait(event)
        finally:
            queue.put_nowait(_END)

    task = asyncio.create_task(pump())
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    while (item := await queue.get()) is not _END:
        yield item  # type: ignore[misc]
    await task  # re-raise a producer failure to the reader


_BACKGROUND: set[asyncio.Task[None]] = set()


def ndjson(event: Event) -> bytes:
    return event.model_dump_json().encode() + b"\n"


def sse(event: Event) -> bytes:
    return f"event: {event.type}\ndata: {json.dumps(event.model_dump())}\n\n".encode()
