"""A turn's Markdown as Discord messages: at most 2000 characters each, a few per turn.

Text is cut between lines with code fences closed and reopened at each cut
(``split_message``). Past ``MAX_MESSAGES`` the last message says the whole text is
attached as ``output.txt``.
"""

from __future__ import annotations

from controller.chat.layout import Layout, capped, split_message

LIMIT = 2000  # Discord refuses longer message content
MAX_MESSAGES = 4
OVERFLOW_NOTE = "*The output is too long for Discord messages; the full text is attached as `output.txt`.*"


def layout(markdown: str, limit: int = LIMIT, max_messages: int = MAX_MESSAGES) -> Layout:
    return capped(split_message(markdown, limit), max_messages, OVERFLOW_NOTE)


def batches(
    files: list[tuple[str, bytes]], limit: int, per_message: int = 10
) -> list[list[tuple[str, bytes]]]:
    """Files grouped for messages: at most ``per_message`` each, and ``limit`` bytes together
    (each file is under ``limit`` already)."""
    groups: list[list[tuple[str, bytes]]] = []
    size = 0
    for file in files:
        if not groups or len(groups[-1]) == per_message or size + len(file[1]) > limit:
            groups.append([])
            size = 0
        groups[-1].append(file)
        size += len(file[1])
    return groups
