"""Which Slack message events threadbox answers, and what a handled message is.

Pure functions over the event payload; the store lookup that decides whether a
thread is active happens in the caller, so this module needs no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.identity import ThreadKey
from controller.slack.layout import unescape

# Plain user messages, messages with files, and thread replies also sent to the channel.
HANDLED_SUBTYPES = {None, "file_share", "thread_broadcast"}
_MENTION = re.compile(r"<@(?P<user>[A-Z0-9]+)(?:\|[^>]*)?>")


@dataclass(frozen=True)
class Inbound:
    team: str
    channel: str
    ts: str
    root_ts: str
    user: str
    text: str
    is_dm: bool
    mentioned: bool
    files: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> ThreadKey:
        return ThreadKey("slack", self.team, self.channel, self.root_ts)

    @property
    def starts_thread(self) -> bool:
        return self.ts == self.root_ts

    @property
    def claim(self) -> str:
        # app_mention and message.* deliver the same message under different event ids.
        return f"slack-message/{self.team}/{self.channel}/{self.ts}"


def parse(event: dict[str, Any], team: str, bot_user: str | None, is_mention_event: bool) -> Inbound | None:
    """The message as threadbox sees it, or None for messages it never answers (bots, edits...)."""
    if event.get("subtype") not in HANDLED_SUBTYPES or event.get("bot_id"):
        return None
    user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
    if not (user and channel and ts) or user == bot_user:
        return None
    raw = str(event.get("text") or "")
    mentioned = is_mention_event or (bot_user is not None and _mentions(raw, bot_user))
    return Inbound(
        team=team,
        channel=channel,
        ts=ts,
        root_ts=event.get("thread_ts") or ts,
        user=user,
        text=clean_text(raw, bot_user),
        is_dm=event.get("channel_type") == "im",
        mentioned=mentioned,
        files=list(event.get("files") or []),
    )


def _mentions(text: str, bot_user: str) -> bool:
    return any(m["user"] == bot_user for m in _MENTION.finditer(text))


def clean_text(text: str, bot_user: str | None) -> str:
    """Drop the bot's own mention and undo Slack's escaping of ``& < >`` (code needs them)."""
    if bot_user:
        text = _MENTION.sub(lambda m: "" if m["user"] == bot_user else m[0], text)
    return unescape(text).strip()


def answer_rule(
    msg: Inbound, reply_mode: Literal["mention", "all"]
) -> Literal["always", "if_active", "never"]:
    """DMs and mentions are always answered; other thread replies only in threads the bot is in."""
    if msg.is_dm or msg.mentioned:
        return "always"
    if reply_mode == "all" and not msg.starts_thread:
        return "if_active"
    return "never"
