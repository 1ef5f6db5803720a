"""A task card per code execution in a streamed reply: running, then complete or error.

The card shows the code and the tail of its output, as much as one message would hold. A running card's output is a
preview, refreshed at most every ``PREVIEW_SECONDS``: its final output comes when it
completes, and refreshing at every edit would cost as many calls as ``chat.update`` did.
Output longer than the card shows is attached in full when the turn ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from controller.slack.blocks import defuse

PREVIEW_SECONDS = 10.0
CODE_LINES = 15
OUTPUT_LINES = 50
MAX_CHARS = 3500  # as one chat.update message (controller/slack/layout.py)

Status = Literal["in_progress", "complete", "error"]
TITLES = {"in_progress": "Running code", "complete": "Ran code", "error": "The code stopped with an error"}


def tail(text: str, lines: int, chars: int) -> tuple[str, bool]:
    """The last ``lines`` lines within ``chars``, and whether anything was cut."""
    kept = text.rstrip("\n").splitlines()[-lines:]
    short = "\n".join(kept)[-chars:]
    return short, short != text.rstrip("\n")


def head(text: str, lines: int, chars: int) -> str:
    kept = text.rstrip("\n").splitlines()
    short = "\n".join(kept[:lines])[:chars]
    return short if short == text.rstrip("\n") else short + "\n…"


@dataclass
class Card:
    id: str
    code: str
    status: Status = "in_progress"
    output: str = ""
    previewed_at: float | None = None
    cut: bool = False

    def add_output(self, text: str) -> None:
        self.output += text

    def finish(self, failed: bool) -> None:
        self.status = "error" if failed else "complete"

    def preview_due(self) -> bool:
        return self.previewed_at is None or time.monotonic() - self.previewed_at >= PREVIEW_SECONDS

    def chunk(self) -> dict[str, Any]:
        """The card's current state as a ``task_update`` chunk (Slack updates a card by its id)."""
        shown, self.cut = tail(self.output, OUTPUT_LINES, MAX_CHARS)
        chunk: dict[str, Any] = {"type": "task_update", "id": self.id, "title": TITLES[self.status]}
        chunk |= {
            "status": self.status,
            "details": defuse(f"```\n{head(self.code, CODE_LINES, MAX_CHARS)}\n```"),
        }
        if shown:
            self.previewed_at = time.monotonic()
            prefix = "…\n" if self.cut else ""
            chunk["output"] = defuse(f"```\n{prefix}{shown}\n```")
        return chunk
