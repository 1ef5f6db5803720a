"""Run a turn to completion in its own task, whatever happens to the reader.

A client that disconnects (or a Slack handler that gives up) must not cut a turn
short before its files are persisted, so the producer never depends on the consumer
being there. While the reader is there, a small queue between them makes a slow reader
slow the producer down (and, through ZeroMQ, the kernel) instead of piling events up in
the controller; once the reader has gone, the turn runs on and its events are dropped.

Over HTTP, a silent stretch (a 120 s cell that prints nothing) is filled with keepalives, so
proxies that cut idle connections (nginx's 60 s ``proxy_read_timeout``) leave the stream open.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Literal

from pydantic import BaseModel, Field, RootModel

from controller.events import Event
from controller.tasks import TaskSet

log = logging.getLogger(__name__)

QUEUE_EVENTS = 64
KEEPALIVE_SECONDS = 15.0
SSE_KEEPALIVE = b": keepalive\n\n"  # a comment, which EventSource skips
_END = object()


class Keepalive(BaseModel):
    """Sent on an NDJSON stream after ``KEEPALIVE_SECONDS`` without an event; clients skip it.
    An SSE stream sends a comment line instead, which EventSource ignores."""

    type: Literal["keepalive"] = "keepalive"


class StreamEvent(RootModel[Annotated[Event | Keepalive, Field(discriminator="type")]]):
    """One line of an NDJSON turn stream, or the ``data`` of one SSE event."""


async def detached(events: AsyncIterator[Event], owner: TaskSet) -> AsyncGenerator[Event, None]:
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


async def with_keepalives(events: AsyncGenerator[Event, None]) -> AsyncGenerator[Event | Keepalive, None]:
    """``events``, with a Keepalive after each KEEPALIVE_SECONDS without one.

    The next event is awaited in a task that a timeout never cancels, so no event is lost and
    ``events`` is not finalised by a timeout."""
    pending = asyncio.ensure_future(anext(events))
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_SECONDS)
            if not done:
                yield Keepalive()
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            yield event
            pending = asyncio.ensure_future(anext(events))
    finally:
        if pending.done():
            await events.aclose()
        else:  # closing a generator mid-step is refused; cancelling the step ends it instead
            pending.cancel()


def ndjson(event: Event | Keepalive) -> bytes:
    return event.model_dump_json().encode() + b"\n"


def sse(event: Event | Keepalive) -> bytes:
    if isinstance(event, Keepalive):
        return SSE_KEEPALIVE
    return f"event: {event.type}\ndata: {json.dumps(event.model_dump())}\n\n".encode()
