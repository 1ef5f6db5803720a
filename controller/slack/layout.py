"""Laying a turn's text out as Slack messages: escaped, split, capped.

Slack truncates ``text`` at 40,000 characters and long messages read badly, so
text is split at ~3,500 characters on line boundaries, closing and reopening
code fences at each cut. A turn gets at most ``MAX_MESSAGES`` messages; beyond
that the last one says the full text is attached as a file.
"""

from __future__ import annotations

from dataclasses import dataclass

LIMIT = 3500
MAX_MESSAGES = 3
FENCE = "```"
OVERFLOW_NOTE = "_The output is too long for Slack messages; the full text is attached as `output.txt`._"


def escape(text: str) -> str:
    """Slack reads ``<...>`` as links and mentions; these three must be escaped, nothing else."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _pieces(line: str, width: int) -> list[str]:
    return [line[i : i + width] for i in range(0, len(line), width)] or [""]


def split_message(text: str, limit: int = LIMIT) -> list[str]:
    """Chunks of at most ``limit`` characters, cut between lines, each with balanced fences."""
    reserve = len(FENCE) + 1  # room to close a fence left open at a cut
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    in_fence = False
    for line in text.split("\n"):
        for piece in _pieces(line, limit - 2 * reserve):
            if current and size + len(piece) + 1 + reserve > limit:
                chunks.append("\n".join([*current, FENCE] if in_fence else current))
                current = [FENCE] if in_fence else []
                size = reserve if in_fence else 0
            current.append(piece)
            size += len(piece) + 1
            if piece.lstrip().startswith(FENCE):
                in_fence = not in_fence
    if current:
        chunks.append("\n".join(current))
    return chunks


@dataclass(frozen=True)
class Layout:
    messages: list[str]
    overflow: bool


def layout(markdown: str, limit: int = LIMIT, max_messages: int = MAX_MESSAGES) -> Layout:
    chunks = split_message(escape(markdown), limit)
    if len(chunks) <= max_messages:
        return Layout(chunks, False)
    return Layout([*chunks[: max_messages - 1], OVERFLOW_NOTE], True)
