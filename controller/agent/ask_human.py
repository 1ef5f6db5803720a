"""The agent's ``ask_a_human`` tool: the model hands the thread to a person.

Only a chat front-end with an operator destination can hand a thread over, so the tool is
offered only inside a turn that set ``ASK`` (controller/chat/handoff.py does, around the
agent's turn). The context variable carries one mutable ``HumanAsked`` into the agent, as the
usage figures are carried (controller/usage/figures.py): the turn's events run in a task
spawned inside the pipeline's context, which copies this same object.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

TOOL_NAME = "ask_a_human"
TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "Hand this conversation to a human operator when the user asks for a person, "
        "or when you cannot help (account, billing, complaints, or after repeated failures). "
        "You stay silent afterwards until the person hands it back.",
        "parameters": {
            "type": "object",
            "properties": {"reason": {"type": "string", "description": "One line for the person."}},
            "required": ["reason"],
        },
    },
}
ASKED_RESULT = (
    "A person has been asked to take over this thread. Tell the user so in one short sentence "
    "and call no more tools."
)


@dataclass
class HumanAsked:
    """Set by the tool during one turn; the pipeline hands the thread over once the turn ends."""

    reason: str | None = None


ASK: ContextVar[HumanAsked | None] = ContextVar("threadbox_ask_a_human", default=None)


def offered() -> list[dict[str, Any]]:
    """The tool's declaration, if this turn can hand the thread over; else none."""
    return [TOOL] if ASK.get() is not None else []


def ask(arguments: str) -> str:
    """Run the tool: note the reason for the pipeline; the tool result for the model."""
    asked = ASK.get()
    if asked is None:  # a model calling a tool it was not offered
        return "Not available here: no person can take this thread."
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        args = {}
    reason = args.get("reason") if isinstance(args, dict) else None
    asked.reason = str(reason or "the assistant asked for a person")
    return ASKED_RESULT
