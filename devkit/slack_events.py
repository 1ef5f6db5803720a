"""Send Slack Events API deliveries to the real app, signed the way Slack signs them."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from controller.slack.route import signature_of
from devkit.fake_slack import BOT_TOKEN, BOT_USER_ID, TEAM_ID, FakeSlack

SIGNING_SECRET = "test-signing-secret"
USER = "U0ALICE"
_ids = itertools.count(1)


def slack_settings(fake: FakeSlack, **overrides: Any) -> dict[str, Any]:
    """Settings overrides that point threadbox's Slack front-end at the fake."""
    return {
        "slack_mode": "http",
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": SIGNING_SECRET,
        "slack_api_url": fake.url,
        "slack_update_interval": 0.3,
        **overrides,
    }


def new_ts() -> str:
    n = next(_ids)
    return f"{1_600_000_000 + n}.{n:06d}"


def code(source: str) -> str:
    return f"```python\n{source}\n```"


@dataclass
class Sent:
    ts: str
    thread_ts: str
    event_id: str
    body: dict[str, Any]
    response: httpx.Response


class SlackSender:
    """``client`` is an API client; events go to the chat port: ``chat``, or the `api`
    fixture's ``client.chat``."""

    def __init__(
        self, client: httpx.Client, secret: str = SIGNING_SECRET, chat: httpx.Client | None = None
    ) -> None:
        self.client = client
        self.chat: httpx.Client = chat or client.chat  # type: ignore[attr-defined]
        self.secret = secret

    def post_raw(
        self,
        raw: bytes,
        timestamp: int | None = None,
        signature: str | None = None,
        retry: int | None = None,
        content_type: str = "application/json",
    ) -> httpx.Response:
        """Signed over the raw bytes, as Slack signs, so a body that is not UTF-8 can be sent too."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signature or signature_of(self.secret, stamp, raw),
        }
        if retry is not None:
            headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        return self.chat.post("/slack/events", content=raw, headers=headers)

    def deliver(self, body: dict[str, Any], retry: int | None = None) -> httpx.Response:
        return self.post_raw(json.dumps(body).encode(), retry=retry)

    def send(self, kind: str, channel: str, text: str, **options: Any) -> Sent:
        """One delivery of a user's message as ``app_mention`` or ``message`` (``kind``);
        ``options`` are ``message_body``'s (thread_ts, files, channel_type, ts)."""
        body = message_body(kind, channel, text, **options)
        event = body["event"]
        return Sent(
            event["ts"], event.get("thread_ts") or event["ts"], body["event_id"], body, self.deliver(body)
        )

    def mention(self, channel: str, text: str, **kw: Any) -> Sent:
        return self.send("app_mention", channel, f"<@{BOT_USER_ID}> {text}", **kw)

    def click(
        self, button: dict[str, Any], channel: str, thread_ts: str, reply_ts: str, user: str = USER
    ) -> httpx.Response:
        """A button press on the bot's reply, as Slack's interactivity payload (form-encoded)."""
        payload = {
            "type": "block_actions",
            "user": {"id": user, "team_id": TEAM_ID},
            "team": {"id": TEAM_ID},
            "api_app_id": "A0THREADBOX",
            "channel": {"id": channel},
            "container": {
                "type": "message",
                "message_ts": reply_ts,
                "channel_id": channel,
                "thread_ts": thread_ts,
            },
            "message": {"ts": reply_ts, "thread_ts": thread_ts},
            "trigger_id": f"{next(_ids)}.trigger",
            "actions": [{**button, "block_id": "b", "action_ts": str(time.time())}],
        }
        raw = urlencode({"payload": json.dumps(payload)}).encode()
        return self.post_raw(raw, content_type="application/x-www-form-urlencoded")


def message_body(
    kind: str,
    channel: str,
    text: str,
    thread_ts: str | None = None,
    files: list[dict[str, Any]] | None = None,
    channel_type: str = "channel",
    ts: str | None = None,
    team: str = TEAM_ID,
) -> dict[str, Any]:
    """The Events API body of a user's message as ``app_mention`` or ``message`` (``kind``),
    for a sender that delivers it more than once."""
    ts = ts or new_ts()
    event: dict[str, Any] = {"type": kind, "user": USER, "text": text, "ts": ts, "channel": channel}
    event |= {"event_ts": ts, "team": team}
    if kind == "message":
        event["channel_type"] = channel_type
    if thread_ts:
        event["thread_ts"] = thread_ts
    if files:
        event |= {"files": files, "subtype": "file_share"} if kind == "message" else {"files": files}
    return envelope(event, team)


def envelope(event: dict[str, Any], team: str = TEAM_ID) -> dict[str, Any]:
    return {
        "token": "legacy-verification-token",
        "team_id": team,
        "api_app_id": "A0THREADBOX",
        "event": event,
        "type": "event_callback",
        "event_id": f"Ev{next(_ids):010d}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": team, "user_id": BOT_USER_ID, "is_bot": True}],
    }
