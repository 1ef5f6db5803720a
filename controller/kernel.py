"""A session with one Jupyter kernel: execute code and yield typed events.

Works the same for a local process and a pod: it needs only the connection
info and a liveness probe supplied by the backend. Only the messages whose
parent is the current request are yielded (IOPub is a broadcast).

Nothing here may block the event loop on a kernel, whatever the kernel does (dead, never
started, hostile, slow). jupyter_client's ``Session.send`` sends synchronously even on an
asyncio socket (it shadows it with a blocking one), and a DEALER with no peer that completed
the handshake (a port taken by another process's socket) blocked it for good. So every
socket has ``SNDTIMEO`` 0: a send that cannot be queued at once fails the call, and the
reply waits below carry the timeouts. Sockets close with ``LINGER`` 0 and their context is
a shadow of one process-wide ZeroMQ context that is never terminated, so closing a session
never waits for a kernel either.
"""

from __future__ import annotations

import contextlib
import functools
import json
import queue
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import zmq
import zmq.asyncio
from jupyter_client.asynchronous.client import AsyncKernelClient

from controller import extensions
from controller.events import Display, Done, Error, Event, Stream
from controller.outputcap import DEFAULT_MAX_OUTPUT_BYTES

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
POLL = 0.25
RECONNECT_MS = 20
# Messages ZeroMQ may hold for us per socket before it stops reading from the kernel (TCP then
# pushes back onto the kernel's own queue): with MAXMSGSIZE, this bounds what a kernel can make
# the controller buffer.
RCVHWM = 4

AliveProbe = Callable[[], Awaitable[bool]]


class KernelUnavailable(Exception):
    """The kernel did not answer in time or has died."""


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


MAX_SOCKETS = 16384


def max_message_bytes(max_output: int) -> int:
    """The largest message a kernel may send us: a whole allowed output, JSON-escaped, and a header.

    A larger one makes ZeroMQ drop the connection (it reconnects) before reading the message in.
    """
    return 2 * max_output + 2**20


def limit_note(limit: int) -> str:
    """What a turn's stream says, once, where its output was cut (sandbox-image's outputcap.py says the same)."""
    return f"\n[output limit] This execution printed more than {limit:,} bytes; the rest is not shown.\n"


LOST_NOTE = (
    "\n[output lost] The connection to the kernel dropped (a message over the size limit, or a "
    "kernel restart): some output of this execution is missing.\n"
)


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


class OutputBudget:
    """One execution's output allowance in bytes: past it, output is dropped after one note.

    The first error always passes (it says why the cell stopped), whatever came before.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit
        self.error_shown = False

    def admit(self, event: Event) -> list[Event]:
        if isinstance(event, Error) and not self.error_shown:
            self.error_shown = True
            return [event]
        if self.left < 0:
            return []
        size = _size(event)
        if size <= self.left:
            self.left -= size
            return [event]
        shown: list[Event] = []
        if isinstance(event, Stream) and self.left > 0:
            head = event.text.encode()[: self.left].decode(errors="ignore")
            shown.append(Stream(type=event.type, text=head))
        self.left = -1
        return [*shown, Stream(type="stderr", text=limit_note(self.limit))]


def _size(event: Event) -> int:
    if isinstance(event, Stream):
        return len(event.text.encode())
    if isinstance(event, Display):
        return sum(len(v) if isinstance(v, str) else len(json.dumps(v)) for v in event.data.values())
    if isinstance(event, Error):
        return len(event.evalue) + sum(len(line) for line in event.traceback)
    return 0


@functools.cache
def _shared() -> zmq.Context[zmq.Socket[bytes]]:
    """The process-wide context. ZeroMQ caps a context at 1023 sockets by default, closed ones
    counting until its reaper frees them, and every session holds 4 or 5 sockets."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    context.set(zmq.MAX_SOCKETS, MAX_SOCKETS)
    return context


def _context(max_message: int) -> zmq.asyncio.Context:
    """This session's socket options over the process-wide ZeroMQ context (never terminated)."""
    context = zmq.asyncio.Context.shadow(_shared().underlying)
    # Until the kernel binds, ZeroMQ retries the connection every RECONNECT_IVL (100 ms by
    # default): that wait lands on every cold start.
    for option, value in (
        (zmq.RECONNECT_IVL, RECONNECT_MS),
        (zmq.SNDTIMEO, 0),
        (zmq.LINGER, 0),
        (zmq.MAXMSGSIZE, max_message),
        (zmq.RCVHWM, RCVHWM),
    ):
        context.setsockopt(option, value)
    return context


class KernelSession:
    def __init__(
        self, connection: dict[str, Any], alive: AliveProbe, max_output: int = DEFAULT_MAX_OUTPUT_BYTES
    ) -> None:
        self.client = AsyncKernelClient(context=_context(max_message_bytes(max_output)))
        self.client.load_connection_info(connection)  # type: ignore[arg-type]
        self.alive = alive
        self.last_state = "starting"
        self.workspace_changed: bool | None = None
        self._drops: zmq.asyncio.Socket | None = None  # IOPub's disconnect events, once asked for
        self._kernel: str | None = None  # the kernel's own session id, from its kernel_info reply

    def _send(self, request: Callable[..., str], *args: Any, **kwargs: Any) -> str:
        """Queue a request to the kernel, or fail at once: ZeroMQ could not take it (no peer, queue full)."""
        try:
            return request(*args, **kwargs)
        except zmq.ZMQError as exc:
            raise KernelUnavailable(f"the kernel is not taking requests ({exc})") from exc

    async def start(self, timeout: float) -> None:
        """Wait until the kernel answers kernel_info and IOPub is connected.

        jupyter_client's ``wait_for_ready`` judges liveness by heartbeat, which misses beats
        while a cold kernel imports on a busy machine and then reports a healthy kernel dead.
        The backend's probe (process or pod state) is the truth, so it is used instead.
        """
        self.client.start_channels(stdin=False, hb=False)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(KernelUnavailable):  # no peer yet: asked again after the wait
                self._send(self.client.kernel_info)
            if await self._got_kernel_info():
                break
            if not await self.alive():
                self.close()
                raise KernelUnavailable("the kernel exited while starting; see its log")
            if time.monotonic() > deadline:
                self.close()
                raise KernelUnavailable(f"the kernel did not become ready within {timeout:g}s")
        # The startup chatter (kernel_info's status messages) is left queued: a turn reads past
        # messages of other parents, and a wait for IOPub to go quiet cost every start 50 ms.
        self.last_state = "idle"

    async def _got_kernel_info(self) -> bool:
        try:
            msg = await self.client.get_shell_msg(timeout=1)
        except queue.Empty:
            return False
        if msg["msg_type"] != "kernel_info_reply":
            return False
        self._kernel = msg["header"].get("session")  # which kernel process this session talks to
        try:
            await self.client.get_iopub_msg(timeout=0.2)  # proves the SUB socket is connected
        except queue.Empty:
            return False
        return True

    def close(self) -> None:
        """Close the sockets at once, dropping whatever is unsent (never waits for the kernel)."""
        self._stop_drop_watch()
        for channel in (self.client.shell_channel, self.client.iopub_channel, self.client.control_channel):
            channel.close()  # LINGER 0

    async def _reconnect_iopub(self) -> None:
        """Open a new IOPub connection, proven by a message arriving on it.

        ZeroMQ ends a connection for good on a protocol error (an oversized message), and a new
        one made while the kernel is still busy with that message was seen to stay silent, so
        this runs once the execution is over and each try is checked with a kernel_info.
        """
        for _ in range(3):
            self._stop_drop_watch()
            self.client.iopub_channel.close()
            self.client._iopub_channel = None  # the next access connects a new socket
            self.client.iopub_channel.start()
            with contextlib.suppress(KernelUnavailable):
                self._send(self.client.kernel_info)
            with contextlib.suppress(queue.Empty):
                await self.client.get_iopub_msg(timeout=1)
                return

    def _stop_drop_watch(self) -> None:
        """End the IOPub disconnect monitor: the monitored socket's side first, then the reader.

        ZeroMQ's I/O thread sends monitor events with a blocking send to a PAIR socket, so a
        reader closed while the monitor stays on blocks that thread at the next disconnect, and
        with it every socket of the process-wide context: a 200-thread load run stalled that way,
        each new session then timing out on a kernel that was up and waiting.
        """
        if self._drops is None:
            return
        with contextlib.suppress(zmq.ZMQError):
            self.client.iopub_channel.socket.disable_monitor()
        self._drops.close(linger=0)
        self._drops = None

    async def _iopub_dropped(self) -> bool:
        """Whether ZeroMQ dropped the IOPub connection since the last call (its messages are lost)."""
        if self._drops is None:
            # pyzmq names the endpoint after the socket's fd, which a later socket may reuse while
            # this one is still being reaped: an address of its own never meets another monitor.
            self._drops = self.client.iopub_channel.socket.get_monitor_socket(
                zmq.EVENT_DISCONNECTED, addr=f"inproc://threadbox-drops-{uuid.uuid4().hex}"
            )
        dropped = False
        while await self._drops.poll(0):
            await self._drops.recv_multipart()
            dropped = True
        return dropped

    def stop(self) -> None:
        """Interrupt the running execution the way its timeout would, grace and restart included."""
        self._stop_requested = True

    async def interrupt(self) -> bool:
        """Ask the kernel to interrupt over the control channel; True if it acknowledged."""
        msg = self.client.session.msg("interrupt_request", {})
        try:
            self._send(self.client.control_channel.send, msg)
        except KernelUnavailable:
            return False
        try:
            reply = await self.client.get_control_msg(timeout=2)
        except queue.Empty:
            return False
        return bool(reply["content"].get("status") == "ok")

    async def execute(
        self, code: str, timeout: float, grace: float = 5.0, max_output: int = DEFAULT_MAX_OUTPUT_BYTES
    ) -> AsyncIterator[Event]:
        """Run ``code``; yields output events and ends with exactly one Done (after an Error if any).

        Output past ``max_output`` bytes is dropped after one note, while the turn reads on to
        the kernel's idle, so it ends as usual.
        """
        started = time.monotonic()
        try:
            msg_id = self._send(
                self.client.execute,
                code,
                allow_stdin=False,
                stop_on_error=True,
                user_expressions={extensions.CHANGED_KEY: extensions.CHANGED_EXPRESSION},
            )
        except KernelUnavailable as exc:
            self.last_state = "unresponsive"
            yield Error(
                kind="sandbox_failed", ename="KernelUnavailable", evalue=f"Could not run this: {exc}."
            )
            yield Done(status="error", seconds=time.monotonic() - started)
            return
        self.last_state = "busy"
        self.workspace_changed = None
        self._stop_requested = False
        budget = OutputBudget(max_output)
        interrupted_at: float | None = None
        failed = False
        reply: dict[str, Any] | None = None
        await self._iopub_dropped()  # forget drops before this execution
        dropped = False
        while True:
            now = time.monotonic()
            if interrupted_at is None and (now > started + timeout or self._stop_requested):
                await self.interrupt()
                interrupted_at = now
            elif interrupted_at is not None and now > interrupted_at + grace:
                self.last_state = "unresponsive"
                yield _interrupted_error(timeout, self._stop_requested, restarted=True)
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
                # IOPub loses messages when ZeroMQ drops its connection (a message over the size
                # limit, a kernel restart): then the reply on shell, which is never dropped, and
                # a quiet IOPub end the turn, so a lost idle costs a poll, not the timeout.
                # Without a drop, output may still be in flight behind the reply: wait for idle.
                if not dropped and await self._iopub_dropped():
                    dropped = True
                    yield Stream(type="stderr", text=LOST_NOTE)
                if dropped:
                    reply, replaced = await self._after_drop(msg_id)
                    if replaced:
                        self.last_state = "dead"
                        yield _died_error()
                        yield Done(status="error", seconds=time.monotonic() - started)
                        return
                    if reply is not None:
                        break
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
                    event = _interrupted_error(timeout, self._stop_requested, restarted=False)
            for shown in budget.admit(event):
                yield shown
        if dropped:
            await self._reconnect_iopub()
        self.last_state = "idle"
        reply = reply or await self._reply(msg_id, wait=2)
        self.workspace_changed = extensions.workspace_changed(reply)
        failed = failed or (reply is not None and reply["content"].get("status") == "error")
        status: Literal["ok", "error", "aborted"] = "error" if failed else "ok"
        if interrupted_at is not None:
            status = "aborted"
        yield Done(status=status, execution_count=_count(reply), seconds=time.monotonic() - started)

    async def _after_drop(self, msg_id: str) -> tuple[dict[str, Any] | None, bool]:
        """After IOPub dropped: the execution's reply if it came, and whether another kernel now
        answers on these ports. A pod relaunches a kernel that exits, on the same ports, so a
        dropped connection and a live pod can still mean this session's kernel is gone."""
        with contextlib.suppress(KernelUnavailable):
            self._send(self.client.kernel_info)
        end = time.monotonic() + POLL
        while True:
            try:
                msg = await self.client.get_shell_msg(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                return None, False
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg, False
            session = msg["header"].get("session")
            if msg["msg_type"] == "kernel_info_reply" and self._kernel and session != self._kernel:
                return None, True

    async def _reply(self, msg_id: str, wait: float) -> dict[str, Any] | None:
        """The shell reply to ``msg_id`` if it comes within ``wait`` seconds; older replies are skipped."""
        end = time.monotonic() + wait
        while True:
            try:
                reply = await self.client.get_shell_msg(timeout=max(0.0, min(0.5, end - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= end:
                    return None
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply


def _count(reply: dict[str, Any] | None) -> int | None:
    count = reply["content"].get("execution_count") if reply else None
    return int(count) if count is not None else None


RESTART_NOTE = "Your next message starts a fresh kernel with this thread's files."


def _died_error() -> Error:
    return Error(
        kind="kernel_died",
        ename="KernelDied",
        evalue="The kernel stopped while running this code (it may have run out of memory or been killed). "
        + RESTART_NOTE,
    )


def _interrupted_error(timeout: float, stopped: bool, restarted: bool) -> Error:
    if restarted:
        detail = (
            "the interrupt did not stop it, so the kernel is being restarted: "
            "variables are lost, files are kept."
        )
    else:
        detail = "it was interrupted; variables defined before are kept."
    if stopped:
        return Error(kind="stopped", ename="Stopped", evalue=f"Stopped on request: {detail}")
    return Error(
        kind="timeout", ename="TimeoutError", evalue=f"Execution timed out after {timeout:g}s: {detail}"
    )
