"""TaskSet: background work is owned, its failures are logged, and drain() ends it all."""

from __future__ import annotations

import asyncio

import pytest

from controller.tasks import TaskSet

TIMEOUT = 5


async def test_drain_waits_for_work_and_cancels_what_outlives_the_timeout() -> None:
    tasks, finished = TaskSet("test"), []

    async def quick() -> None:
        await asyncio.sleep(0)
        finished.append("quick")

    never = asyncio.Event()
    tasks.spawn(quick())
    stuck = tasks.spawn(never.wait())
    assert len(tasks) == 2
    await asyncio.wait_for(tasks.drain(timeout=0.2), TIMEOUT)
    assert finished == ["quick"] and stuck.cancelled() and len(tasks) == 0


async def test_a_failed_task_is_logged_with_its_owner(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSet("Slack answers")

    async def broken() -> None:
        raise RuntimeError("boom")

    tasks.spawn(broken())
    await asyncio.wait_for(tasks.drain(), TIMEOUT)
    assert "a background task of Slack answers failed" in caplog.text and "boom" in caplog.text
