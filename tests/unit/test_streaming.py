"""detached(): a slow reader slows the producer (bounded queue), a reader that goes away
never stops the turn, and the owner holds the turn's task until it ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from controller.events import Done, Event, Stream
from controller.streaming import QUEUE_EVENTS, detached
from controller.tasks import TaskSet

TIMEOUT = 10


class Turn:
    """A turn's events: ``count`` outputs and a Done; records how far it got and whether it finished."""

    def __init__(self, count: int, fail: bool = False) -> None:
        self.count = count
        self.fail = fail
        self.produced = 0
        self.finished = asyncio.Event()

    async def events(self) -> AsyncIterator[Event]:
        try:
            for i in range(self.count):
                self.produced += 1
                yield Stream(type="stdout", text=f"{i}\n")
            if self.fail:
                raise RuntimeError("the turn broke")
            yield Done(status="ok")
        finally:
            self.finished.set()


async def test_a_slow_reader_holds_the_producer_back() -> None:
    turn, owner = Turn(1000), TaskSet("turns")
    read, ahead = 0, 0
    async for _ in detached(turn.events(), owner):
        read += 1
        await asyncio.sleep(0)  # a reader slower than the producer: let it run ahead as far as it can
        await asyncio.sleep(0)
        ahead = max(ahead, turn.produced - read)
    assert read == 1001
    assert ahead <= QUEUE_EVENTS + 1


async def test_a_reader_that_goes_away_leaves_the_turn_running_to_its_end() -> None:
    turn, owner = Turn(1000), TaskSet("turns")
    reader = detached(turn.events(), owner)
    for _ in range(3):
        await anext(reader)
    await reader.aclose()
    assert len(owner) == 1  # the turn runs on, owned
    await asyncio.wait_for(turn.finished.wait(), TIMEOUT)
    await asyncio.wait_for(owner.drain(), TIMEOUT)
    assert turn.produced == 1000
    assert len(owner) == 0


async def test_a_producer_failure_reaches_a_present_reader() -> None:
    turn, owner = Turn(5, fail=True), TaskSet("turns")
    seen = []
    with pytest.raises(RuntimeError, match="the turn broke"):
        async for event in detached(turn.events(), owner):
            seen.append(event)
    assert len(seen) == 5
    await asyncio.wait_for(owner.drain(), TIMEOUT)
    assert len(owner) == 0


async def test_a_failure_after_the_reader_left_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    turn, owner = Turn(200, fail=True), TaskSet("turns")
    reader = detached(turn.events(), owner)
    await anext(reader)
    await reader.aclose()
    await asyncio.wait_for(owner.drain(), TIMEOUT)
    assert "a turn failed after its reader had gone" in caplog.text
    assert "a background task" not in caplog.text  # handled where it happened, logged once
