"""An IPython extension that caps what one cell prints, inside the kernel.

ipykernel's ``OutStream`` batches writes by time (about 0.2 s), so a single IOPub message
can carry tens of MB, all serialised by the kernel and read in by the controller only to be
dropped there (controller/kernel.py caps output per execution too). This stops an honest
kernel from sending it at all: per cell (reset on ``pre_run_cell``), ``sys.stdout`` and
``sys.stderr`` together publish at most the limit minus ``NOTE_ROOM`` bytes, then one note on
stderr, then nothing more. Output written to the process's file descriptors (C code,
subprocesses) reaches these streams too, so it is counted as well.

Standalone on purpose: it runs inside the sandbox from the lean sandbox env, so it uses only
the stdlib and IPython, never ``controller`` or ``threadbox_sandbox``. It is loaded by path at
kernel start (``controller/outputcap.py`` gives the arguments) and reads its limit from the
``SANDBOX_MAX_OUTPUT_BYTES`` environment variable (unset or 0: no cap).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

ENV = "SANDBOX_MAX_OUTPUT_BYTES"
# Output stops this far below the limit, so the kernel's note keeps the total under the
# controller's cap and the controller adds no second note.
NOTE_ROOM = 1024


def note(limit: int) -> str:
    """The same sentence the controller writes where it cuts output (controller/kernel.py)."""
    return f"\n[output limit] This execution printed more than {limit:,} bytes; the rest is not shown.\n"


class OutputCap:
    """One cell's budget, shared by stdout and stderr and by every thread that writes to them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit - NOTE_ROOM
        self.noted = False
        self.lock = threading.Lock()
        self.inside = threading.local()

    def reset(self) -> None:
        with self.lock:
            self.left = self.limit - NOTE_ROOM
            self.noted = False

    def take(self, text: str) -> tuple[str, bool]:
        """The part of ``text`` that still fits, and whether this call is the one to add the note."""
        with self.lock:
            head = text[: max(self.left, 0)]  # at least one byte per character: never more than fits
            data = head.encode("utf-8", "replace")
            if len(data) > self.left:
                head = data[: max(self.left, 0)].decode("utf-8", "ignore")
                data = head.encode("utf-8", "replace")
            self.left = 0 if len(head) < len(text) else self.left - len(data)
            first_cut = len(head) < len(text) and not self.noted
            self.noted = self.noted or first_cut
            return head, first_cut

    def write(self, write: Callable[[str], Any], note_write: Callable[[str], Any], text: Any) -> int:
        if not isinstance(text, str) or getattr(self.inside, "yes", False):
            return int(write(text))  # already counted by a wrapper further out (IPython's tee)
        self.inside.yes = True
        try:
            shown, first_cut = self.take(text)
            if shown:
                write(shown)
        finally:
            self.inside.yes = False
        if first_cut:
            sys.stdout.flush()  # the note comes after the output it cuts
            note_write(note(self.limit))
        return len(text)


class CappedWrite:
    """``write`` for the streams' class: whatever an instance's ``write`` is set to, the cap is in front.

    IPython (9) sets ``stream.write`` to a history-recording wrapper around every cell and sets it
    back afterwards, and ipykernel's thread that forwards subprocess output calls ``self.write``
    after the cell too. As a data descriptor this sees those assignments: it keeps the assigned
    function underneath and always hands out the capped one.
    """

    SLOT = "_outputcap_write"

    def __init__(self, cap: OutputCap, write: Callable[..., Any]) -> None:
        self.cap = cap
        self.plain = write

    def __get__(self, stream: Any, owner: type | None = None) -> Any:
        if stream is None:
            return self
        inner = vars(stream).get(self.SLOT) or self.plain.__get__(stream)
        capped = functools.partial(self.cap.write, inner, self.plain.__get__(sys.stderr))
        capped.inner = inner  # type: ignore[attr-defined]
        return capped

    def __set__(self, stream: Any, write: Any) -> None:
        # Putting back what was handed out must not wrap the cap once more per cell.
        vars(stream)[self.SLOT] = getattr(write, "inner", write)


def load_ipython_extension(ip: Any) -> None:
    limit = int(os.environ.get(ENV) or 0)
    if limit > 0:
        cap = OutputCap(limit)
        for cls in {type(sys.stdout), type(sys.stderr)}:
            cls.write = CappedWrite(cap, cls.write)  # type: ignore[method-assign]
        ip.events.register("pre_run_cell", lambda *_: cap.reset())
