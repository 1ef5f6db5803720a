"""Button presses on a reply: Stop (the thread's owner only) and feedback.

A Stop reaches the turn through the thread store, so it works whichever replica Slack
sends the click to: ``slack-stop/<thread>`` names the turn (the asking message's ts), and
the replica running that turn polls for it (``watch_stop``). The replica that gets the
click interrupts at once when it runs the turn itself. Either way the kernel is
interrupted as a timeout would (grace, then restart).

Feedback is counted (no per-thread label) and kept in the thread under
``slack-feedback/<reply ts>``, beside the turn's record ``slack-turns/<reply ts>``. Each key
has one writer, so a press that lands before the turn is recorded loses neither; Slack sends
every toggle, so the last one wins.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from controller.identity import is_thread_id
from controller.threads import get_thread

if TYPE_CHECKING:
    from controller.runtime import Runtime

log = logging.getLogger(__name__)

STOP_POLL_SECONDS = 2.0
VERDICTS = ("good", "bad")


def stop_key(thread_id: str) -> str:
    return f"slack-stop/{thread_id}"


def turn_key(reply_ts: str) -> str:
    return "slack-turns/" + reply_ts.replace(".", "-")


def feedback_key(reply_ts: str) -> str:
    return "slack-feedback/" + reply_ts.replace(".", "-")


def stop_value(thread_id: str, turn: str) -> str:
    return f"{thread_id}:{turn}"


class Actions:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def stop(self, body: dict[str, Any], client: AsyncWebClient) -> None:
        """``client`` is Bolt's for this click: it holds the token of the click's workspace."""
        thread_id, _, turn = _action(body)["value"].partition(":")
        user, team = body["user"]["id"], (body.get("team") or {}).get("id")
        record = (
            await asyncio.to_thread(get_thread, self.rt.store, thread_id) if is_thread_id(thread_id) else None
        )
        if record is None or (record.workspace, record.user) != (team, user):
            self.rt.metrics.slack_stops.labels("refused").inc()
            owner = f"<@{record.user}>" if record and record.user else "the person who started it"
            await _tell(client, body, f"Only {owner} can stop this thread's code.")
            return
        if self.rt.manager.interrupt(thread_id):
            self.rt.metrics.slack_stops.labels("stopped").inc()
            return
        await asyncio.to_thread(
            self.rt.store.put_state, stop_key(thread_id), {"turn": turn, "at": time.time()}
        )
        self.rt.metrics.slack_stops.labels("requested").inc()

    async def watch_stop(self, thread_id: str, turn: str) -> None:
        """While a turn runs: interrupt it once a Stop for it is in the store (from any replica)."""
        key = stop_key(thread_id)
        while True:
            await asyncio.sleep(STOP_POLL_SECONDS)
            asked = await asyncio.to_thread(self.rt.store.get_state, key)
            if isinstance(asked, dict) and asked.get("turn") == turn and self.rt.manager.interrupt(thread_id):
                await asyncio.to_thread(self.rt.store.delete_state, key)

    async def feedback(self, body: dict[str, Any]) -> None:
        verdict, _, thread_id = _action(body)["value"].partition(":")
        if verdict not in VERDICTS or not is_thread_id(thread_id):
            return
        self.rt.metrics.slack_feedback.labels(verdict).inc()
        reply_ts = str((body.get("container") or {}).get("message_ts") or body["message"]["ts"])
        given = {"value": verdict, "user": body["user"]["id"], "at": time.time()}
        await asyncio.to_thread(self.rt.store.put_json, thread_id, feedback_key(reply_ts), given)


async def _tell(client: AsyncWebClient, body: dict[str, Any], text: str) -> None:
    container = body.get("container") or {}
    channel = str((body.get("channel") or {}).get("id") or container.get("channel_id"))
    try:
        await client.chat_postEphemeral(
            channel=channel, user=body["user"]["id"], thread_ts=container.get("thread_ts"), text=text
        )
    except SlackClientError as exc:
        log.warning("could not answer a button press: %s", exc)


def _action(body: dict[str, Any]) -> dict[str, Any]:
    return dict(body["actions"][0])
