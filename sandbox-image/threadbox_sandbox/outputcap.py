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

import os
import sys
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
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit - NOTE_ROOM
        self.noted = False
        self.write_note: Callable[[str], Any] = sys.__stderr__.write if sys.__stderr__ else print

    def reset(self) -> None:
        self.left = self.limit - NOTE_ROOM
        self.noted = False

    def take(self, text: str) -> str:
        """The part of ``text`` that still fits; what does not fit ends this cell's output."""
        if self.left <= 0:
            return ""
        head = text[: self.left]  # at least one byte per character: never more than what fits
        data = head.encode("utf-8", "replace")
        if len(data) > self.left:
            head = data[: self.left].decode("utf-8", "ignore")
            data = head.encode("utf-8", "replace")
        self.left = 0 if len(head) < len(text) else self.left - len(data)
        return head

    def wrap(self, stream: Any) -> Callable[[str], Any]:
        """Put the cap in front of ``stream.write``; returns the write it wraps."""
        write: Callable[[str], Any] = stream.write

        def capped(text: Any) -> int:
            if not isinstance(text, str):
                return int(write(text))  # let the stream refuse it as it would
            shown = self.take(text)
            if shown:
                write(shown)
            if len(shown) < len(text) and not self.noted:
                self.noted = True
                sys.stdout.flush()  # the note comes after the output it cuts
                self.write_note(note(self.limit))
            return len(text)

        capped.outputcap = True  # type: ignore[attr-defined]
        stream.write = capped
        return write

    def on_cell(self, *_: object) -> None:
        """Reset the budget and wrap the streams' writes as they are for this cell.

        IPython (9) swaps ``write`` for a history-recording one around every cell and puts
        back the one it found afterwards, so a wrap made once at start would be undone.
        """
        self.reset()
        if not getattr(sys.stderr.write, "outputcap", False):
            self.write_note = self.wrap(sys.stderr)  # the note itself bypasses the cap
        if not getattr(sys.stdout.write, "outputcap", False):
            self.wrap(sys.stdout)


def load_ipython_extension(ip: Any) -> None:
    limit = int(os.environ.get(ENV) or 0)
    if limit > 0:
        ip.events.register("pre_run_cell", OutputCap(limit).on_cell)
