"""Laying a turn's text out as Slack messages: escaped, split, capped (controller/chat/layout.py).

Slack truncates ``text`` at 40,000 characters and long messages read badly, so
text is split at ~3,500 characters. A turn gets at most ``MAX_MESSAGES`` messages; beyond
that the last one says the full text is attached as a file.
"""

from __future__ import annotations

from controller.chat.layout import Layout, capped, split_message

LIMIT = 3500
MAX_MESSAGES = 3
OVERFLOW_NOTE = "_The output is too long for Slack messages; the full text is attached as `output.txt`._"


def escape(text: str) -> str:
    """Slack reads ``<...>`` as links and mentions; these three must be escaped, nothing else."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def layout(markdown: str, limit: int = LIMIT, max_messages: int = MAX_MESSAGES) -> Layout:
    return capped(split_message(escape(markdown), limit), max_messages, OVERFLOW_NOTE)
