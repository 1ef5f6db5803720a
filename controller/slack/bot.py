"""Answering Slack messages: which to take, once each, and running their turns.

Listeners only call ``receive``, which decides and claims quickly and runs the
turn in a task after Bolt's ack. Claims live in the thread store, so every
replica sees them: ``slack-event/<event_id>`` stops Slack's retries from running
a turn twice, and the per-message claim stops ``app_mention`` and ``message.*``
(two deliveries of one message) from doing so. If a turn fails before anything
was posted, its claims are released so that Slack's retry gets it done.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from slack_sdk.web.async_client import AsyncWebClient

from controller.agent.base import Turn
from controller.slack.attachments import Attachments, Downloader
from controller.slack.config import SlackConfig
from controller.slack.inbound import Inbound, answer_rule, parse
from controller.slack.ratelimit import WorkspaceBuckets
from controller.slack.render import SlackReply
from controller.streaming import detached
from controller.tasks import TaskSet
from controller.threads import ThreadRecord, ensure_thread, get_thread
from controller.uploads import Uploads

if TYPE_CHECKING:
    from controller.runtime import Runtime

log = logging.getLogger(__name__)

DRAIN_SECONDS = 30.0


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
            if reply is None or not reply.posted:
                for key in claims:
                    await asyncio.to_thread(self.rt.store.release, key)
                return
            await _apologize(reply, exc)

    def _api_error(self) -> None:
        self.rt.metrics.slack_errors.labels("api_call").inc()

    def _reply(self, msg: Inbound, thread_id: str, client: AsyncWebClient) -> SlackReply:
        return SlackReply(
            client,
            msg.channel,
            msg.root_ts,
            self.buckets.for_team(msg.team),
            self.config.update_interval,
            self.rt.store,
            thread_id,
            self._api_error,
        )

    def _attachments(self, token: str | None) -> Attachments:
        downloader = Downloader(token or "", self.trusted_hosts, self.config.max_file_bytes)
        return Attachments(self.uploads, downloader)

    async def _turn(self, msg: Inbound, record: ThreadRecord, reply: SlackReply) -> None:
        live = self.rt.manager.is_live(record.id)
        await reply.start("Working on it..." if live else "Starting a sandbox for this thread...")
        received = await self._attachments(reply.client.token).receive(record, msg.files)
        for problem in received.problems:
            reply.note(problem)
        limit = self.config.max_code_bytes
        if len(msg.text.encode()) > limit:
            reply.note(f"Your message is over the {limit}-byte limit, so I did not run it.")
        else:
            turn = Turn(record.id, msg.text, record.user, received.names)
            async for event in detached(
                self.rt.manager.turn(turn.thread_id, self.rt.agent.respond(turn)), self.rt.manager.turns
            ):
                await reply.show(event)
        await reply.finish()


async def _apologize(reply: SlackReply, exc: Exception) -> None:
    reply.note(f"Something went wrong on my side and this turn stopped: {exc}")
    try:
        await reply.finish()
    except Exception:
        log.exception("could not post the failure note either")
        reply.on_api_error()
