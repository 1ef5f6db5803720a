"""Polling for a condition the system under test gives no signal for, with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
    """True as soon as ``predicate()`` is truthy; False once ``timeout`` seconds have passed."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


async def until(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> None:
    """Return once ``predicate()`` is truthy, yielding to the event loop between checks;
    TimeoutError after ``timeout`` seconds. ``interval`` 0 re-checks after every loop pass."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(interval)
