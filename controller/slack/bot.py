"""Answering Slack messages: which to take, once each, and running their turns.

Listeners only call ``receive``, which decides and claims quickly and runs the
turn in a task after Bolt's ack. Claims live in the thread store, so every
replica sees them: ``slack-event/<event_id>`` stops Slack's retries from running
a turn twice, and the per-message claim stops ``app_mention`` and ``message.*``
(two deliveries of one message) from doing so. If a turn fails before anything
ran (Slack did not answer its first call), its claims are released so that
Slack's retry gets it done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from slack_sdk.web.async_client import AsyncWebClient

from controller.agent.base import Turn
from controller.slack.actions import Actions, stop_value, turn_key
from controller.slack.attachments import Attachments, Downloader
from controller.slack.config import SlackConfig
from controller.slack.inbound import Inbound, answer_rule, parse
from controller.slack.ratelimit import WorkspaceBuckets
from controller.slack.render import Hooks, SlackReply
from controller.slack.status import STARTING, WORKING
from controller.slack.stream import Recipient
from controller.streaming import detached
from controller.tasks import TaskSet
from controller.threads import ThreadRecord, ensure_thread, get_thread
from controller.uploads import Uploads

if TYPE_CHECKING:
    from controller.runtime import Runtime

log = logging.getLogger(__name__)

DRAIN_SECONDS = 30.0
# Refusals that mean the workspace cannot stream at all: its later replies skip the attempt.
STREAMING_UNAVAILABLE = {"missing_scope", "not_allowed", "not_allowed_token_type", "unknown_method"}


class SlackBot:
    def __init__(
        self, runtime: Runtime, config: SlackConfig, client: AsyncWebClient, trusted_hosts: frozenset[str]
    ) -> None:
        self.rt = runtime
        self.config = config
        self.client = client
        self.buckets = WorkspaceBuckets()
        self.trusted_hosts = trusted_hosts
        self.uploads = Uploads(runtime.store, runtime.manager, runtime.quotas)
        self.actions = Actions(runtime)
        self._no_streaming: set[str] = set()  # teams whose streaming was refused for good
        self._tasks = TaskSet("Slack answers")
        runtime.metrics.slack_answers_running.set_function(lambda: len(self._tasks))

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
        outcome = await self._take(body, msg, client)
        self.rt.metrics.slack_handled.labels(outcome).inc()

    async def _take(self, body: dict[str, Any], msg: Inbound | None, client: AsyncWebClient) -> str:
        """Start answering ``msg`` unless it is not for the bot or another delivery has it."""
        if msg is None or not await self._wanted(msg):
            return "ignored"
        claims = [f"slack-event/{body['event_id']}"] if body.get("event_id") else []
        claims.append(msg.claim)
        for key in claims:
            if not await asyncio.to_thread(self.rt.store.claim, key):
                return "duplicate"  # a retry or the other delivery of this message; it is handled there
        self._tasks.spawn(self._answer(msg, claims, client))
        return "answered"

    async def _wanted(self, msg: Inbound) -> bool:
        rule = answer_rule(msg, self.config.reply_mode)
        if rule == "if_active":
            # Active means the thread record exists: durable, so any replica and restarts agree.
            return await asyncio.to_thread(get_thread, self.rt.store, msg.key.id) is not None
        return rule == "always"

    async def drain(self) -> None:
        """Let running turns finish (they persist files) before the manager shuts down."""
        await self._tasks.drain(DRAIN_SECONDS)

    async def _answer(self, msg: Inbound, claims: list[str], client: AsyncWebClient) -> None:
        reply: SlackReply | None = None
        try:
            name = f"slack {msg.channel} {msg.root_ts}"
            record = await asyncio.to_thread(ensure_thread, self.rt.store, msg.key, name, msg.user)
            reply = self._reply(msg, record.id, client)
            await self._turn(msg, record, reply)
        except Exception as exc:
            log.exception("Slack turn failed in %s/%s", msg.channel, msg.root_ts)
            self.rt.metrics.slack_errors.labels("turn_failed").inc()
            if reply is None or not reply.started:
                for key in claims:
                    await asyncio.to_thread(self.rt.store.release, key)
                return
            await _apologize(reply, exc)

    def _api_error(self) -> None:
        self.rt.metrics.slack_errors.labels("api_call").inc()

    def _stream_refused(self, team: str, error: str) -> None:
        self.rt.metrics.slack_errors.labels("stream_refused").inc()
        if error in STREAMING_UNAVAILABLE:
            self._no_streaming.add(team)

    def _reply(self, msg: Inbound, thread_id: str, client: AsyncWebClient) -> SlackReply:
        return SlackReply(
            client,
            Recipient(msg.channel, msg.root_ts, msg.user, msg.team),
            self.buckets.for_team(msg.team),
            self.config.update_interval,
            self.rt.store,
            thread_id,
            Hooks(self._api_error, partial(self._stream_refused, msg.team)),
            streaming=self.config.streaming and msg.team not in self._no_streaming,
            stop=stop_value(thread_id, msg.ts),
        )

    def _attachments(self, token: str | None) -> Attachments:
        downloader = Downloader(token or "", self.trusted_hosts, self.config.max_file_bytes)
        return Attachments(self.uploads, downloader)

    async def _turn(self, msg: Inbound, record: ThreadRecord, reply: SlackReply) -> None:
        live = self.rt.manager.is_live(record.id)
        await reply.start(WORKING if live else STARTING, live)
        received = await self._attachments(reply.client.token).receive(record, msg.files)
        for problem in received.problems:
            reply.note(problem)
        limit = self.config.max_code_bytes
        if len(msg.text.encode()) > limit:
            reply.note(f"Your message is over the {limit}-byte limit, so I did not run it.")
        else:
            await self._run(Turn(record.id, msg.text, record.user, received.names), msg.ts, reply)
        await reply.finish()
        await asyncio.to_thread(self._record, record.id, msg, reply)

    async def _run(self, turn: Turn, asked_ts: str, reply: SlackReply) -> None:
        watch = asyncio.create_task(self.actions.watch_stop(turn.thread_id, asked_ts))
        try:
            events = self.rt.manager.turn(turn.thread_id, self.rt.agent.respond(turn))
            async for event in detached(events, self.rt.manager.turns):
                await reply.show(event)
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch

    def _record(self, thread_id: str, msg: Inbound, reply: SlackReply) -> None:
        """The turn in the thread's history, under the reply that carries its feedback buttons."""
        if reply.final_ts is None:
            return
        turn = {"asked": msg.ts, "user": msg.user, "reply": reply.final_ts, "streamed": reply.streaming}
        self.rt.store.put_json(thread_id, turn_key(reply.final_ts), {**turn, "at": time.time()})


async def _apologize(reply: SlackReply, exc: Exception) -> None:
    reply.note(f"Something went wrong on my side and this turn stopped: {exc}")
    try:
        await reply.finish()
    except Exception:
        log.exception("could not post the failure note either")
        reply.on_api_error()
