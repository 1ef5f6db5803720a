"""Keeping a kernel's variables across sandboxes: the side of the sync that sits beside the kernel.

Run by the local backend (in the controller, which syncs a local kernel's files) and by the
in-pod server (sandbox-image's server.py, which syncs a pod's), never by anything that reads
the state: the kernel itself pickles and unpickles (sandbox-image's state.py extension), and
this only asks it to, in a silent execute_request's ``user_expressions``, and moves the file
it wrote between the sandbox's HOME and the thread's own storage (``BLOB``). What comes back
from the kernel is a JSON summary, read as JSON.

Blocking (jupyter_client's blocking client, the store's calls): callers use a worker thread.
"""

from __future__ import annotations

import ast
import contextlib
import json
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.nofollow import fd_path, open_regular, place
from controller.quotas import SNAPSHOT, Quotas, Usage, user_usage
from controller.stores.base import NotInStore, StoreError, ThreadStore

if TYPE_CHECKING:
    from jupyter_client.blocking.client import BlockingKernelClient

BLOB = SNAPSHOT  # the store key, under the thread's prefix
STATE_FILE = ".threadbox-state"  # in the sandbox's HOME (sandbox-image's state.py writes it)
SAVE = "get_ipython().threadbox_save_state({cap})"
LOAD = "get_ipython().threadbox_load_state()"
# Pickling 100 MB takes about a second; the wait covers a slow machine and a big namespace.
TIMEOUT = 120.0
MAX_SUMMARY = 1 << 20  # a kernel's answer is the user's to shape: bounded before parsing


class StateError(Exception):
    """The kernel did not save or load its state; the message says why."""


@dataclass(frozen=True)
class Saved:
    """What a save kept (the kernel's summary), for the log and the bench."""

    saved: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    over_cap: bool = False
    bytes: int = 0
    unchanged: bool = False
    cap: int = 0

    @classmethod
    def of(cls, summary: dict[str, Any], cap: int) -> Saved:
        """From the kernel's summary (or the in-pod server's answer, which is one)."""
        return cls(
            saved=[str(n) for n in summary.get("saved", [])],
            skipped={str(k): str(v) for k, v in dict(summary.get("skipped", {})).items()},
            over_cap=bool(summary.get("over_cap")),
            bytes=int(summary.get("bytes", 0)),
            unchanged=bool(summary.get("unchanged")),
            cap=int(summary.get("cap", cap)),
        )

    def describe(self) -> str:
        if self.unchanged:
            return "variables unchanged since the last save"
        if self.over_cap:
            return f"variables NOT saved: more than {_size(self.cap)}"
        skipped = f"; skipped {_named(self.skipped)}" if self.skipped else ""
        return f"saved {len(self.saved)} variable(s), {self.bytes:,} bytes{skipped}"


def ask(connection: dict[str, Any], expression: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """Evaluate ``expression`` in the kernel, silently; its value must be a JSON object's text."""
    with _client(connection) as client:
        msg_id = client.execute("", silent=True, store_history=False, user_expressions={"r": expression})
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StateError(f"the kernel did not answer within {timeout:g}s")
            try:
                reply = client.get_shell_msg(timeout=left)
            except queue.Empty:
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                return _answer(reply)


@contextlib.contextmanager
def _client(connection: dict[str, Any]) -> Iterator[BlockingKernelClient]:
    # Imported on first use: every sandbox pod's server imports this module as it starts, and
    # these take 70 to 95 ms of a cold pod's one CPU while its kernel starts beside it.
    import zmq
    from jupyter_client.blocking.client import BlockingKernelClient

    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    context.setsockopt(zmq.LINGER, 0)
    context.setsockopt(zmq.SNDTIMEO, 5000)  # a kernel that takes nothing fails the call, never hangs it
    client = BlockingKernelClient(context=context)
    client.load_connection_info(connection)  # type: ignore[arg-type]
    client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
    try:
        yield client
    finally:
        client.stop_channels()
        context.term()


def _answer(reply: dict[str, Any]) -> dict[str, Any]:
    found = (reply.get("content") or {}).get("user_expressions", {}).get("r")
    if not isinstance(found, dict):
        raise StateError("the kernel did not run the request")
    if found.get("status") != "ok":
        raise StateError(f"{found.get('ename')}: {str(found.get('evalue'))[:300]}")
    shown = (found.get("data") or {}).get("text/plain", "")
    if not isinstance(shown, str) or len(shown) > MAX_SUMMARY:
        raise StateError("the kernel's answer is not a summary")
    try:  # the repr of a str: a literal, so literal_eval (not eval) reads it
        value = json.loads(ast.literal_eval(shown))
    except (ValueError, SyntaxError, TypeError, MemoryError) as exc:
        raise StateError(f"the kernel's answer is not a summary ({exc})") from exc
    if not isinstance(value, dict):
        raise StateError("the kernel's answer is not a summary")
    return value


def room(store: ThreadStore, thread_id: str, quotas: Quotas, cap: int, user: str | None = None) -> int:
    """The most a snapshot may take: the cap, and what the thread's byte quota and ``user``'s
    (counted over their other threads; None: no per-user check, a pod cannot list them) leave
    beside the thread's files. The snapshot it replaces is not counted."""
    limits = [quotas.thread_max_bytes] if quotas.thread_max_bytes else []
    if quotas.user_max_bytes and user:
        limits.append(quotas.user_max_bytes - user_usage(store, user, thread_id).bytes)
    if not limits:
        return cap
    files = Usage.of(store.list_files(thread_id)).bytes
    return max(0, min(cap, *(limit - files for limit in limits)))


def save(
    connection: dict[str, Any],
    store: ThreadStore,
    thread_id: str,
    home: Path,
    cap: int,
    timeout: float = TIMEOUT,
) -> Saved:
    """Have the kernel write its variables (at most ``cap`` bytes), and store what it wrote."""
    saved = Saved.of(ask(connection, SAVE.format(cap=int(cap)), timeout), cap)
    if saved.unchanged:
        return saved
    try:
        # The kernel's own file, never followed through a link it may have put there.
        with open_regular(home, STATE_FILE) as fh:
            store.put_blob(thread_id, BLOB, fd_path(fh.fileno()))
    finally:
        (home / STATE_FILE).unlink(missing_ok=True)  # unlink never follows the link it removes
    return saved


def stored(store: ThreadStore | None, thread_id: str) -> bool:
    """Whether the thread has saved variables; True when no store can say (look anyway)."""
    if store is None:
        return True
    try:
        return store.blob_size(thread_id, BLOB) is not None
    except StoreError:
        return True


def fetch(store: ThreadStore, thread_id: str, home: Path) -> bool:
    """Put the thread's stored state where the kernel loads it from; False if there is none."""
    try:
        place(home, STATE_FILE, lambda fh: store.download_blob(thread_id, BLOB, fh), twins=False)
    except NotInStore:
        return False
    return True


def load(connection: dict[str, Any]) -> str | None:
    """Have the kernel load the fetched state; the one line that tells the user what came back."""
    return note(ask(connection, LOAD))


def note(summary: dict[str, Any]) -> str | None:
    """ "Restored df, model, x; could not keep conn (socket)." None when there was nothing to say."""
    if summary.get("over_cap"):
        return (
            "Kernel state: nothing was kept when this sandbox stopped: the variables took more than "
            f"{_size(int(summary.get('cap', 0)))} (THREADBOX_STATE_MAX_BYTES, or what the storage "
            "quotas leave beside the files)."
        )
    restored = [str(n) for n in summary.get("restored", [])]
    failed = {str(k): str(v) for k, v in dict(summary.get("failed", {})).items()}
    parts = [f"restored {', '.join(restored)}"] if restored else []
    if failed:
        parts.append(f"could not keep {_named(failed)}")
    if not parts:
        return None
    return f"Kernel state: {'; '.join(parts)}."


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 10 * 2**20 else f"{n:,} bytes"


def _named(reasons: dict[str, str]) -> str:
    return ", ".join(f"{name} ({reason})" for name, reason in sorted(reasons.items()))
