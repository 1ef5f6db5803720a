"""Block Kit pieces of a reply: Markdown made safe, the Stop button, the feedback buttons.

Slack reads ``<!channel>``, ``<!here>``, ``<@U…>`` and ``<#C…>`` as broadcasts and mentions,
and ``@channel``/``@here``/``@everyone`` too where names are linked. Output and agent text are
shown as written, but a word joiner (U+2060, invisible) goes between ``<`` or ``@`` and what
follows, so no text the bot relays can notify anyone.
"""

from __future__ import annotations

import re
from typing import Any

ACTION_STOP = "threadbox_stop"
ACTION_FEEDBACK = "threadbox_feedback"
WORD_JOINER = "\u2060"
_TRIGGERS = re.compile(r"(<)(?=[!@#])|(@)(?=(?:channel|here|everyone)\b)", re.IGNORECASE)


def defuse(text: str) -> str:
    return _TRIGGERS.sub(lambda m: m[0] + WORD_JOINER, text)


def markdown_block(text: str) -> dict[str, Any]:
    """Standard Markdown, rendered by Slack (``**bold**``, links, headings, fences)."""
    return {"type": "markdown", "text": defuse(text)}


def stop_actions(value: str) -> dict[str, Any]:
    """A Stop button; ``value`` names the thread and turn (controller/slack/actions.py)."""
    button = {
        "type": "button",
        "action_id": ACTION_STOP,
        "text": {"type": "plain_text", "text": "Stop"},
        "style": "danger",
        "value": value,
    }
    return {"type": "actions", "block_id": "threadbox_running", "elements": [button]}


def feedback_block(thread_id: str) -> dict[str, Any]:
    def button(text: str, value: str) -> dict[str, Any]:
        return {"text": {"type": "plain_text", "text": text}, "value": f"{value}:{thread_id}"}

    element = {
        "type": "feedback_buttons",
        "action_id": ACTION_FEEDBACK,
        "positive_button": button("Good answer", "good"),
        "negative_button": button("Bad answer", "bad"),
    }
    return {"type": "context_actions", "elements": [element]}
