"""A kernel that never started, died, or whose ports belong to someone else never blocks the
event loop: every KernelSession call returns within its timeout while the loop keeps running.

The foreign-socket case is the hang seen under load: a kernel died with "Address already in
use", its ports were another process's ZeroMQ sockets, and jupyter_client's synchronous send
on a DEALER with no completed peer blocked the loop for good.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import zmq

from controller.events import Done, Error
from controller.kernel import KernelSession, KernelUnavailable
from controller.loopwatch import LoopWatch
from controller.metrics import Metrics
from devkit.ports import free_port

# The hang this guards against blocks the loop itself, where asyncio's timeouts cannot fire.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")


def connection(port: int) -> dict[str, Any]:
    return {
        "ip": "127.0.0.1",
        "transport": "tcp",
        "key": "k" * 32,
        "signature_scheme": "hmac-sha256",
        **{f"{name}_port": port for name in CHANNELS},
    }


@pytest.fixture
def foreign_port() -> Iterator[int]:
    """A port held by another process's kind of socket: every handshake with it fails."""
    context = zmq.Context()
    socket = context.socket(zmq.PUB)
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    yield port
    socket.close(linger=0)
    context.term()


@pytest.fixture
async def loop_lag() -> AsyncIterator[Metrics]:
    """The loop's worst lag while the test runs, from the controller's own watchdog."""
    metrics = Metrics()
    watch = LoopWatch(metrics.loop_lag, period=0.02)
    await watch.start()
    yield metrics
    await asyncio.sleep(watch.period * 3)  # a quick test still gets the loop observed after it
    await asyncio.wait_for(watch.close(), 10)
    over = metrics.registry.get_sample_value("threadbox_event_loop_lag_seconds_bucket", {"le": "0.25"})
    total = metrics.registry.get_sample_value("threadbox_event_loop_lag_seconds_count")
    assert total, "the watchdog did not run"
    assert over == total, "the event loop was blocked for over 0.25 s"


async def alive() -> bool:
    return True


async def dead() -> bool:
    return False


@pytest.mark.parametrize("where", ["nothing listening", "a foreign socket"])
async def test_start_gives_up_in_time(where: str, foreign_port: int, loop_lag: Metrics) -> None:
    port = free_port() if where == "nothing listening" else foreign_port
    session = KernelSession(connection(port), alive)
    started = time.monotonic()
    with pytest.raises(KernelUnavailable, match="did not become ready within 2s"):
        await asyncio.wait_for(session.start(2), 10)
    assert time.monotonic() - started < 4.5


async def test_start_stops_at_once_when_the_probe_says_dead(loop_lag: Metrics) -> None:
    session = KernelSession(connection(free_port()), dead)
    with pytest.raises(KernelUnavailable, match="exited while starting"):
        await asyncio.wait_for(session.start(60), 5)


async def run_all(session: KernelSession, timeout: float) -> list[Any]:
    return [event async for event in session.execute("print(1)", timeout, grace=1)]


async def test_execute_on_a_kernel_that_died_ends_with_kernel_died(loop_lag: Metrics) -> None:
    session = KernelSession(connection(free_port()), dead)
    session.client.start_channels(stdin=False, hb=False)
    events = await asyncio.wait_for(run_all(session, 30), 5)  # the send is queued; nobody answers
    assert [type(e) for e in events] == [Error, Done]
    assert events[0].kind == "kernel_died"
    session.close()


@pytest.mark.parametrize("where", ["nothing listening", "a foreign socket"])
async def test_an_unanswering_kernel_ends_the_turn_in_time(
    where: str, foreign_port: int, loop_lag: Metrics
) -> None:
    """Alive by the probe, never answering: the turn times out, interrupts, gives up after the grace.

    Against a foreign socket ZeroMQ may also refuse the request outright (no peer to queue it
    for): then the turn fails at once. Either way it ends, and closing never waits.
    """
    port = free_port() if where == "nothing listening" else foreign_port
    session = KernelSession(connection(port), alive)
    session.client.start_channels(stdin=False, hb=False)
    started = time.monotonic()
    events = await asyncio.wait_for(run_all(session, 1), 10)
    assert time.monotonic() - started < 1 + 2 + 1 + 1  # timeout, interrupt reply wait, grace, a poll
    assert [type(e) for e in events] == [Error, Done]
    assert (events[0].kind, events[-1].status) in {("timeout", "aborted"), ("sandbox_failed", "error")}
    assert session.last_state == "unresponsive"
    began = time.monotonic()
    session.close()
    assert time.monotonic() - began < 0.1
