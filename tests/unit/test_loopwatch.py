"""The event-loop watchdog sees a blocked loop: the lag histogram records it, and the warning
names the blocking frame while the loop is still blocked."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from controller.loopwatch import LoopWatch
from controller.metrics import Metrics

BLOCK = 0.6


def lag_sum(metrics: Metrics) -> float:
    return float(metrics.registry.get_sample_value("threadbox_event_loop_lag_seconds_sum") or 0.0)


def lag_count(metrics: Metrics) -> float:
    return float(metrics.registry.get_sample_value("threadbox_event_loop_lag_seconds_count") or 0.0)


async def block_the_loop_on_purpose() -> None:
    time.sleep(BLOCK)  # noqa: ASYNC251 - the fault being measured: a blocking call on the loop


async def test_a_blocked_loop_is_measured_and_its_stack_logged(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    watch = LoopWatch(metrics.loop_lag, period=0.05, warn_after=0.2)
    caplog.set_level(logging.WARNING, logger="controller.loopwatch")
    await watch.start()
    try:
        await asyncio.wait_for(block_the_loop_on_purpose(), 5)
        # The watch's wake-up fell due while the loop was blocked; timers run in due order, so
        # it has run (and observed the lag) before this later one fires.
        await asyncio.sleep(watch.period)
        assert lag_sum(metrics) >= BLOCK - 0.1
    finally:
        await asyncio.wait_for(watch.close(), 10)
    assert (
        metrics.registry.get_sample_value("threadbox_event_loop_lag_seconds_bucket", {"le": "0.5"})
        is not None
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "block_the_loop_on_purpose" in warnings[0]
    assert "the event loop has not run for" in warnings[0]


async def test_an_idle_loop_shows_no_lag_and_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    watch = LoopWatch(metrics.loop_lag, period=0.02, warn_after=0.5)
    caplog.set_level(logging.WARNING, logger="controller.loopwatch")
    await watch.start()
    await asyncio.sleep(0.3)  # an idle loop, observed for a while (the thing under test)
    await asyncio.wait_for(watch.close(), 10)
    assert lag_count(metrics) >= 5
    assert lag_sum(metrics) / lag_count(metrics) < 0.1
    assert [r for r in caplog.records if r.levelno == logging.WARNING] == []
