"""with_keepalives(): a keepalive fills each silent stretch, no event is lost to the timeout,
and a reader that goes away mid-wait still leaves the turn running to its end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from controller import streaming
from controller.events import Done, Event, Stream
from controller.streaming import Keepalive, detached, with_keepalives
from controller.tasks import TaskSet

TIMEOUT = 10


async def slow_turn(release: asyncio.Event, finished: asyncio.Event) -> AsyncIterator[Event]:
    try:
        yield Stream(type="stdout", text="before\n")
        await release.wait()
        yield Stream(type="stdout", text="after\n")
        yield Done(status="ok")
    finally:
        finished.set()


@pytest.fixture(autouse=True)
def quick_keepalives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming, "KEEPALIVE_SECONDS", 0.01)


async def test_silence_is_filled_with_keepalives_and_every_event_arrives() -> None:
    release, finished, owner = asyncio.Event(), asyncio.Event(), TaskSet("turns")
    seen: list[str] = []
    async for item in with_keepalives(detached(slow_turn(release, finished), owner)):
        seen.append(item.type)
        if seen.count("keepalive") == 3:
            release.set()
    assert seen[0] == "stdout" and seen[-2:] == ["stdout", "done"]
    assert set(seen[1:-2]) == {"keepalive"} and len(seen) >= 6
    await asyncio.wait_for(owner.drain(), TIMEOUT)


async def test_a_reader_gone_during_a_silence_leaves_the_turn_running() -> None:
    release, finished, owner = asyncio.Event(), asyncio.Event(), TaskSet("turns")
    reader = with_keepalives(detached(slow_turn(release, finished), owner))
    assert isinstance(await anext(reader), Stream)
    assert isinstance(await anext(reader), Keepalive)  # waiting on the turn, which is silent
    await reader.aclose()
    release.set()
    await asyncio.wait_for(finished.wait(), TIMEOUT)
    await asyncio.wait_for(owner.drain(), TIMEOUT)
    assert len(owner) == 0
