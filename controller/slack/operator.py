"""Slack's side of operator handoff (controller/chat/desk.py): handed-off threads go to the
channel ``THREADBOX_SLACK_OPERATOR_CHANNEL``, one Slack thread there per user thread (its
"desk", ``<channel>:<thread ts>``), and operators answer by replying in that thread.

Messages in the operator channel never start agent turns: a reply in a desk is an operator's
message, anything else there is the operators' own conversation.
"""

from __future__ import annotations

from typing import Any, TypeVar

from slack_sdk.web.async_client import AsyncWebClient

from controller.chat.base import OperatorMessage
from controller.chat.layout import split_message
from controller.slack.inbound import Inbound
from controller.slack.layout import LIMIT, escape

Origin = TypeVar("Origin")  # the front-end's origin (SlackOrigin)


def desk_name(channel: str, thread_ts: str) -> str:
    return f"{channel}:{thread_ts}"


def desk_thread(desk: str | None, channel: str) -> str | None:
    """The thread ts of ``desk`` if it is in ``channel`` (a desk of an earlier operator
    channel is left behind: a new thread opens in the current one)."""
    where, _, ts = (desk or "").partition(":")
    return ts if where == channel and ts else None


def operator_message(body: dict[str, Any], msg: Inbound, origin: Origin) -> OperatorMessage[Origin] | None:
    """A reply in a desk of the operator channel, as the handoff desk takes it; None for a
    message that is not in a thread (the bot's desks are threads). Every reply there counts,
    mention or not, whatever ``THREADBOX_SLACK_REPLY_MODE`` says: a desk is for the user."""
    if msg.starts_thread:
        return None
    claims = [f"slack-event/{body['event_id']}"] if body.get("event_id") else []
    return OperatorMessage(
        desk=desk_name(msg.channel, msg.root_ts),
        user=msg.user,
        text=msg.text,
        claims=(*claims, msg.claim),
        origin=origin,
    )


async def post(client: AsyncWebClient, channel: str, thread_ts: str | None, text: str) -> str:
    """Post ``text`` (escaped, split at Slack's length) in a thread, or as a new message when
    ``thread_ts`` is None; returns the thread's ts."""
    for piece in split_message(escape(text), LIMIT):
        sent = await client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=piece)
        thread_ts = thread_ts or str(sent["ts"])
    assert thread_ts is not None  # split_message gives at least one piece
    return thread_ts
