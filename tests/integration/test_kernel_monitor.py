"""Watching IOPub for drops never wedges ZeroMQ's I/O thread, which every session shares.

ZeroMQ sends monitor events from its I/O thread with a blocking send. A session that closed
its monitor reader but left monitoring on blocked that thread at the kernel's next
disconnect, and then every new session in the process timed out on a kernel that was up: the
stall of the 200-thread load run. Each case runs in a process of its own, because the
positive control wedges the process it runs in.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(200)]

SCRIPT = r"""
import asyncio, sys
from jupyter_client import AsyncKernelManager
from controller.kernel import KernelSession, KernelUnavailable

async def alive() -> bool:
    return True

async def started(km, timeout):
    session = KernelSession(km.get_connection_info(), alive)
    await session.start(timeout=timeout)
    return session

async def main(mode):
    first = AsyncKernelManager()
    await first.start_kernel()
    watched = await started(first, 60)
    # A turn, as every session runs: it reads IOPub to its idle. Unread startup chatter would
    # fill the socket's queue (RCVHWM), ZeroMQ would stop reading the connection and never see
    # the disconnect that fires the monitor.
    assert [e.status async for e in watched.execute("1", 30) if hasattr(e, "status")] == ["ok"]
    assert await watched._iopub_dropped() is False  # the monitor is on
    if mode == "reader-only":
        watched._drops.close(linger=0)  # what a careless close did: the reader goes, the monitor stays
    else:
        watched._stop_drop_watch()
    await first.shutdown_kernel(now=True)  # IOPub disconnects: a monitor still on would fire now
    second = AsyncKernelManager()
    await second.start_kernel()
    try:
        (await started(second, 30)).close()
        print("second session ready")
    except KernelUnavailable as exc:
        print(f"second session failed: {exc}")
    await second.shutdown_kernel(now=True)

asyncio.run(main(sys.argv[1]))
"""


def second_session(mode: str) -> str:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


def test_a_stopped_drop_watch_leaves_other_sessions_working() -> None:
    assert second_session("stop") == "second session ready"


def test_positive_control_a_reader_closed_under_a_live_monitor_wedges_every_session() -> None:
    assert (
        second_session("reader-only") == "second session failed: the kernel did not become ready within 30s"
    )
