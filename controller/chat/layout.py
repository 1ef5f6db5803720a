"""Laying a turn's text out as chat messages, for every front-end: cut between lines with
code fences closed and reopened at each cut, and capped at a few messages, the last of which
then says the whole text is attached. Each platform gives its limits and its own note.
"""

from __future__ import annotations

from dataclasses import dataclass

FENCE = "```"


def _pieces(line: str, width: int) -> list[str]:
    return [line[i : i + width] for i in range(0, len(line), width)] or [""]


def split_message(text: str, limit: int) -> list[str]:
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


def capped(chunks: list[str], max_messages: int, overflow_note: str) -> Layout:
    """``chunks`` as at most ``max_messages`` messages; past that the last one is the note."""
    if len(chunks) <= max_messages:
        return Layout(chunks, False)
    return Layout([*chunks[: max_messages - 1], overflow_note], True)
