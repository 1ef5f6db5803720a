"""A session with one Jupyter kernel: execute code and yield typed events.

Works the same for a local process and a pod: it needs only the connection
info and a liveness probe supplied by the backend. Only the messages whose
parent is the current request are yielded (IOPub is a broadcast).
"""

from __future__ import annotations

import contextlib
import queue
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import zmq
from jupyter_client.asynchronous.client import AsyncKernelClient

from controller.events import Display, Done, Error, Event, Stream

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
POLL = 0.25
RECONNECT_MS = 20
# Startup chatter (status messages of kernel_info) is dropped until IOPub is this quiet; turns
# filter by parent id anyway, so a late message costs nothing but this wait does on every start.
STARTUP_QUIET = 0.05

AliveProbe = Callable[[], Awaitable[bool]]


class KernelUnavailable(Exception):
    """The kernel did not answer in time or has died."""


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def to_event(msg: dict[str, Any]) -> Event | None:
    kind, content = msg["msg_type"], msg["content"]
    if kind == "stream":
        return Stream(type="stdout" if content["name"] == "stdout" else "stderr", text=content["text"])
    if kind in ("display_data", "update_display_data"):
        return Display(data=content["data"])
    if kind == "execute_result":
        return Display(data=content["data"], is_result=True, execution_count=content.get("execution_count"))
    if kind == "error":
        return Error(
            kind="exception",
            ename=content["ename"],
            evalue=content["evalue"],
            traceback=[strip_ansi(line) for line in content.get("traceback", [])],
        )
    return None


class KernelSession:
    def __init__(self, connection: dict[str, Any], alive: AliveProbe) -> None:
        self.client = AsyncKernelClient()
        self.client.load_connection_info(connection)  # type: ignore[arg-type]
        self.alive = alive
        self.last_state = "starting"

    async def start(self, timeout: float) -> None:
        """Wait until the kernel answers kernel_info and IOPub is connected.

        jupyter_client's ``wait_for_ready`` judges liveness by heartbeat, which misses beats
        while a cold kernel imports on a busy machine and then reports a healthy kernel dead.
        The backend's probe (process or pod state) is the truth, so it is used instead.
        """
        # Until the kernel binds, ZeroMQ retries the connection every RECONNECT_IVL (100 ms by
        # default): that wait lands on every cold start. LINGER 0: a context the garbage
        # collector destroys must not wait forever to deliver requests to a kernel that is gone
        # (seen as a hung test run).
        self.client.context.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
        self.client.context.setsockopt(zmq.LINGER, 0)
        self.client.start_channels(hb=False)
        deadline = time.monotonic() + timeout
        while True:
            self.client.kernel_info()
            if await self._got_kernel_info():
                break
            if not await self.alive():
                self.close()
                raise KernelUnavailable("the kernel exited while starting; see its log")
            if time.monotonic() > deadline:
                self.close()
                raise KernelUnavailable(f"the kernel did not become ready within {timeout:g}s")
        with contextlib.suppress(queue.Empty):
            while True:  # drop the startup chatter so the first turn sees only its own messages
                await self.client.get_iopub_msg(timeout=STARTUP_QUIET)
        self.last_state = "idle"

    async def _got_kernel_info(self) -> bool:
        try:
            msg = await self.client.get_shell_msg(timeout=1)
        except queue.Empty:
            return False
        if msg["msg_type"] != "kernel_info_reply":
            return False
        try:
            await self.client.get_iopub_msg(timeout=0.2)  # proves the SUB socket is connected
        except queue.Empty:
            return False
        return True

    def close(self) -> None:
        self.client.stop_channels()

    async def interrupt(self) -> bool:
        """Ask the kernel to interrupt over the control channel; True if it acknowledged."""
        msg = self.client.session.msg("interrupt_request", {})
        self.client.control_channel.send(msg)
        try:
            reply = await self.client.get_control_msg(timeout=2)
        except queue.Empty:
            return False
        return bool(reply["content"].get("status") == "ok")

    async def execute(self, code: str, timeout: float, grace: float = 5.0) -> AsyncIterator[Event]:
        """Run ``code``; yields output events and ends with exactly one Done (after an Error if any)."""
        started = time.monotonic()
        msg_id = self.client.execute(code, allow_stdin=False, stop_on_error=True)
        self.last_state = "busy"
        interrupted_at: float | None = None
        failed = False
        while True:
            now = time.monotonic()
            if interrupted_at is None and now > started + timeout:
                await self.interrupt()
                interrupted_at = now
            elif interrupted_at is not None and now > interrupted_at + grace:
                self.last_state = "unresponsive"
                yield _timeout_error(timeout, restarted=True)
                yield Done(status="aborted", seconds=now - started)
                return
            try:
                msg = await self.client.get_iopub_msg(timeout=POLL)
            except queue.Empty:
                if not await self.alive():
                    self.last_state = "dead"
                    yield _died_error()
                    yield Done(status="error", seconds=time.monotonic() - started)
                    return
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            event = to_event(msg)
            if event is None:
                continue
            if isinstance(event, Error):
                failed = True
                if interrupted_at is not None and event.ename == "KeyboardInterrupt":
                    event = _timeout_error(timeout, restarted=False)
            yield event
        self.last_state = "idle"
        count = await self._reply_count(msg_id)
        status: Literal["ok", "error", "aborted"] = "error" if failed else "ok"
        if interrupted_at is not None:
            status = "aborted"
        yield Done(status=status, execution_count=count, seconds=time.monotonic() - started)

    async def _reply_count(self, msg_id: str) -> int | None:
        # The reply follows idle closely; a short wait keeps a lost reply from hanging the turn.
        end = time.monotonic() + 2
        while time.monotonic() < end:
            try:
                reply = await self.client.get_shell_msg(timeout=0.5)
            except queue.Empty:
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                count = reply["content"].get("execution_count")
                return int(count) if count is not None else None
        return None


def _died_error() -> Error:
    return Error(
        kind="kernel_died",
        ename="KernelDied",
        evalue="The kernel stopped while running this code (it may have run out of memory or been killed). "
        "Your next message starts a fresh kernel with this thread's files.",
    )


def _timeout_error(timeout: float, restarted: bool) -> Error:
    if restarted:
        detail = (
            "the interrupt did not stop it, so the kernel is being restarted: "
            "variables are lost, files are kept."
        )
    else:
        detail = "it was interrupted; variables defined before are kept."
    return Error(
        kind="timeout", ename="TimeoutError", evalue=f"Execution timed out after {timeout:g}s: {detail}"
    )
