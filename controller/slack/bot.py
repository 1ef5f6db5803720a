"""Slack on the chat seam: which Slack messages become turns, and how a turn replies.

Listeners only call ``receive``, which parses the event and hands it to the shared
pipeline (controller/chat/turns.py), which claims it and runs the turn after Bolt's ack.
Claims: ``slack-event/<event_id>`` stops Slack's retries from running a turn twice, and the
per-message claim stops ``app_mention`` and ``message.*`` (two deliveries of one message)
from doing so.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from controller.chat.base import FrontEnd, Incoming, Opened
from controller.chat.turns import Conversations, Pipeline
from controller.identity import ThreadKey
from controller.slack.actions import Actions, stop_value, turn_key
from controller.slack.attachments import Downloader, SlackFile
from controller.slack.config import SlackConfig
from controller.slack.inbound import Inbound, answer_rule, parse
from controller.slack.operator import desk_name, desk_thread, operator_message, post
from controller.slack.ratelimit import WorkspaceBuckets
from controller.slack.render import Hooks, SlackReply
from controller.slack.stream import Recipient
from controller.threads import ThreadRecord

if TYPE_CHECKING:
    from controller.runtime import Runtime

# Refusals that mean the workspace cannot stream at all: its later replies skip the attempt.
STREAMING_UNAVAILABLE = {"missing_scope", "not_allowed", "not_allowed_token_type", "unknown_method"}


@dataclass(frozen=True)
class SlackOrigin:
    """The message as Slack sent it, and Bolt's client for its event (it holds the token of
    the event's workspace)."""

    msg: Inbound
    client: AsyncWebClient


class SlackBot(FrontEnd[SlackOrigin, SlackReply]):
    def __init__(
        self, runtime: Runtime, config: SlackConfig, client: AsyncWebClient, trusted_hosts: frozenset[str]
    ) -> None:
        self.rt = runtime
        self.config = config
        self.client = client
        self.buckets = WorkspaceBuckets()
        self.trusted_hosts = trusted_hosts
        self.actions = Actions(runtime)
        self._no_streaming: set[str] = set()  # teams whose streaming was refused for good
        self.operator_destination = config.operator_channel
        self.turns = Conversations(Pipeline.of(runtime), self, "Slack answers")
        runtime.metrics.slack_answers_running.set_function(lambda: len(self.turns))

    async def receive(
        self,
        body: dict[str, Any],
        event: dict[str, Any],
        bot_user: str | None,
        is_mention_event: bool,
        client: AsyncWebClient,
    ) -> None:
        """``client`` is Bolt's for this event: it holds the token of the event's workspace."""
        self.rt.metrics.slack_events.labels(str(event.get("type") or "unknown")).inc()
        team = str(body.get("team_id") or event.get("team") or "")
        msg = parse(event, team, bot_user, is_mention_event)
        if msg is not None and msg.channel == self.operator_destination:  # operators, not users
            taken = await self.turns.desk.take(operator_message(body, msg, SlackOrigin(msg, client)))
            self.rt.metrics.slack_handled.labels("answered" if taken else "ignored").inc()
            return
        outcome = await self.turns.take(self._incoming(body, msg, client))
        self.rt.metrics.slack_handled.labels(outcome).inc()

    def _incoming(
        self, body: dict[str, Any], msg: Inbound | None, client: AsyncWebClient
    ) -> Incoming[SlackOrigin] | None:
        rule = answer_rule(msg, self.config.reply_mode) if msg else "never"
        if msg is None or rule == "never":
            return None
        claims = [f"slack-event/{body['event_id']}"] if body.get("event_id") else []
        downloader = Downloader(client.token or "", self.trusted_hosts, self.config.max_file_bytes)
        return Incoming(
            key=msg.key,
            user=msg.user,
            text=msg.text,
            message=msg.ts,
            claims=(*claims, msg.claim),
            name=f"slack {msg.channel} {msg.root_ts}",
            origin=SlackOrigin(msg, client),
            attachments=[SlackFile(file, downloader) for file in msg.files],
            only_if_active=rule == "if_active",
        )

    async def drain(self) -> None:
        await self.turns.drain()

    # -- the chat seam -----------------------------------------------------------------------

    def reply(self, msg: Incoming[SlackOrigin], thread_id: str) -> SlackReply:
        slack = msg.origin.msg
        to = Recipient(slack.channel, slack.root_ts, slack.user, slack.team)
        return self._reply(msg.origin.client, to, thread_id, slack.ts)

    def _reply(self, client: AsyncWebClient, to: Recipient, thread_id: str, turn: str) -> SlackReply:
        return SlackReply(
            client,
            to,
            self.buckets.for_team(to.team),
            self.config.update_interval,
            self.rt.store,
            thread_id,
            Hooks(partial(self.count_error, "api_call"), partial(self._stream_refused, to.team)),
            streaming=self.config.streaming and to.team not in self._no_streaming,
            stop=stop_value(thread_id, turn),
        )

    # Operator handoff: ``origin`` carries Bolt's client, with the token of the event's workspace.

    async def to_operator(self, origin: SlackOrigin, desk: str | None, text: str) -> str:
        channel = self.operator_destination
        assert channel is not None  # the desk calls this only where there is a destination
        thread_ts = await post(origin.client, channel, desk_thread(desk, channel), text)
        return desk_name(channel, thread_ts)

    async def to_user(self, origin: SlackOrigin, record: ThreadRecord, text: str) -> None:
        await post(origin.client, record.channel, record.thread, text)

    async def open_thread(self, origin: SlackOrigin, beside: ThreadRecord, text: str) -> Opened:
        """A new top-level message in the original's channel: its ts keys the new thread, so
        replies to it are answered as in any thread the bot is in (``inbound.answer_rule``)."""
        ts = await post(origin.client, beside.channel, None, text)
        key = ThreadKey("slack", beside.workspace, beside.channel, ts)
        return Opened(key, await _permalink(origin.client, beside.channel, ts))

    def reply_in(self, origin: SlackOrigin, record: ThreadRecord) -> SlackReply:
        to = Recipient(record.channel, record.thread, record.user or "", record.workspace)
        return self._reply(origin.client, to, record.id, origin.msg.ts)

    @contextlib.asynccontextmanager
    async def running(self, msg: Incoming[SlackOrigin], thread_id: str) -> AsyncIterator[None]:
        watch = asyncio.create_task(self.actions.watch_stop(thread_id, msg.message))
        try:
            yield
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch

    async def finished(self, msg: Incoming[SlackOrigin], record: ThreadRecord, reply: SlackReply) -> None:
        await asyncio.to_thread(self._record, record.id, msg.origin.msg, reply)

    def count_error(self, kind: str) -> None:
        self.rt.metrics.slack_errors.labels(kind).inc()

    def _stream_refused(self, team: str, error: str) -> None:
        self.rt.metrics.slack_errors.labels("stream_refused").inc()
        if error in STREAMING_UNAVAILABLE:
            self._no_streaming.add(team)

    def _record(self, thread_id: str, msg: Inbound, reply: SlackReply) -> None:
        """The turn in the thread's history, under the reply that carries its feedback buttons."""
        if reply.final_ts is None:
            return
        turn = {"asked": msg.ts, "user": msg.user, "reply": reply.final_ts, "streamed": reply.streaming}
        self.rt.store.put_json(thread_id, turn_key(reply.final_ts), {**turn, "at": time.time()})


async def _permalink(client: AsyncWebClient, channel: str, ts: str) -> str:
    """A link to the message, else words that find it: the link is a nicety, the thread is open."""
    try:
        found = await client.chat_getPermalink(channel=channel, message_ts=ts)
        return str(found["permalink"])
    except (SlackApiError, KeyError):
        return "a new thread in this channel"
