"""TaskSet: background work is owned, its failures are logged, and drain() ends it all."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from controller.tasks import TaskSet, stopping

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


@pytest.mark.parametrize("guarded", [True, False])
async def test_a_loop_ends_even_when_wait_for_swallows_its_cancellation(guarded: bool) -> None:
    """Python 3.11's wait_for returns normally if what it waits for finishes as the task is
    cancelled; a loop that checks stopping() ends anyway (unguarded, the positive control,
    it goes on)."""
    changed, waiting = asyncio.Event(), asyncio.Event()
    passes = 0

    async def loop() -> None:
        nonlocal passes
        while not (guarded and stopping()):
            passes += 1
            waiting.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 5)
            if passes > 2:
                return  # the unguarded loop went round again after its cancellation

    task = asyncio.create_task(loop())
    await waiting.wait()
    changed.set()  # finishes what wait_for waits for, in the same moment as the cancel
    task.cancel()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
    assert (passes == 1) if guarded else (passes > 2)
