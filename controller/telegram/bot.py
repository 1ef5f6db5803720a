"""Telegram on the chat seam: which updates become turns, and how a turn replies.

The webhook route and the getUpdates loop only call ``receive``, which parses the update,
places it in its thread (``chains.py``) and hands it to the shared pipeline
(controller/chat/turns.py), which claims ``telegram-update/<bot>/<update_id>`` (Telegram
retries a webhook delivery until it gets a 2xx, and polling can see an update twice)
and runs the turn in an owned task.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from telegram import Bot

from controller.chat.base import FrontEnd, Incoming, Opened, OperatorMessage
from controller.chat.turns import Conversations, Outcome, Pipeline
from controller.telegram.attachments import TelegramFile
from controller.telegram.chains import Chains, Place
from controller.telegram.inbound import Me, TgMessage, parse
from controller.telegram.operator import Where, desk_name, desk_root, link, send
from controller.telegram.reply import Hooks, Target, TelegramReply
from controller.threads import ThreadRecord

if TYPE_CHECKING:
    from controller.runtime import Runtime


@dataclass(frozen=True)
class TgOrigin:
    msg: TgMessage
    place: Place


class TelegramBot(FrontEnd[TgOrigin, TelegramReply]):
    def __init__(self, runtime: Runtime, bot: Bot, me: Me, interval: float) -> None:
        self.rt = runtime
        self.bot = bot
        self.me = me
        self.interval = interval
        self.chains = Chains(runtime.store, me.id)
        self.max_file_bytes = runtime.settings.max_file_bytes
        self.operator_chat = runtime.settings.telegram_operator_chat
        self.operator_destination = str(self.operator_chat) if self.operator_chat is not None else None
        self.turns = Conversations(Pipeline.of(runtime), self, "Telegram answers")

    async def receive(self, update: dict[str, Any]) -> Outcome:
        outcome = await self._take(update)
        self.rt.metrics.telegram_updates.labels(outcome).inc()
        return outcome

    async def _take(self, update: dict[str, Any]) -> Outcome:
        msg = parse(update, self.me)
        if msg is not None and msg.chat_id == self.operator_chat:  # operators, not users
            return "answered" if await self.turns.desk.take(await self._operator(msg)) else "ignored"
        place = await asyncio.to_thread(self.chains.place, msg) if msg else None
        if msg is None or place is None:
            return "ignored"
        return await self.turns.take(self._incoming(msg, place))

    def _incoming(self, msg: TgMessage, place: Place) -> Incoming[TgOrigin]:
        return Incoming(
            key=place.key,
            user=msg.user,
            text=msg.text,
            message=str(msg.message_id),
            claims=(f"telegram-update/{self.me.id}/{msg.update_id}",),
            name=f"telegram {msg.chat_id} {place.key.thread}",
            origin=TgOrigin(msg, place),
            attachments=[TelegramFile(ref, self.bot, self.max_file_bytes) for ref in msg.files],
            only_if_active=place.rule == "if_active",
        )

    async def _operator(self, msg: TgMessage) -> OperatorMessage[TgOrigin] | None:
        """A reply in a desk's chain as the handoff desk takes it; None for anything else."""
        root = (
            await asyncio.to_thread(self.chains.root_of, msg.chat_id, msg.reply_to) if msg.reply_to else None
        )
        if root is None:
            return None
        place = Place(self.chains.thread(msg.chat_id, f"msg-{root}"), root, "always")
        claim = f"telegram-update/{self.me.id}/{msg.update_id}"
        return OperatorMessage(
            desk_name(msg.chat_id, root), msg.user, msg.text, (claim,), TgOrigin(msg, place)
        )

    async def drain(self) -> None:
        await self.turns.drain()

    def count_error(self, kind: str) -> None:
        self.rt.metrics.telegram_errors.labels(kind).inc()

    def reply(self, msg: Incoming[TgOrigin], thread_id: str) -> TelegramReply:
        tg, root = msg.origin.msg, msg.origin.place.root
        return self._reply(Target(tg.chat_id, tg.topic, tg.message_id, tg.private), root, thread_id)

    def _reply(self, to: Target, root: int | None, thread_id: str) -> TelegramReply:
        link = partial(self.chains.link, to.chat_id, root=root) if root is not None else _no_chain
        return TelegramReply(
            self.bot,
            to,
            self.interval,
            self.rt.store,
            thread_id,
            Hooks(link, partial(self.count_error, "api_call")),
        )

    # Operator handoff: one bot token for every chat, so ``origin`` is not needed to post.

    async def to_operator(self, origin: TgOrigin, desk: str | None, text: str) -> str:
        assert self.operator_chat is not None  # the desk calls this only where there is a destination
        root = desk_root(desk, self.operator_chat)
        return desk_name(
            self.operator_chat, await send(self.bot, self.chains, Where(self.operator_chat, None, root), text)
        )

    async def to_user(self, origin: TgOrigin, record: ThreadRecord, text: str) -> None:
        await send(self.bot, self.chains, Where.of(record), text)

    async def open_thread(self, origin: TgOrigin, beside: ThreadRecord, text: str) -> Opened:
        """Where threads are forum topics, a new topic; elsewhere a new message (no reply) that
        roots a reply chain, as ``chains.py`` keys them: replying to it continues the new thread."""
        place = Where.of(beside)
        chat, topic = place.chat, place.topic
        if topic is None:
            root = await send(self.bot, self.chains, Where(chat, None, None), text)
            where = link(chat, root) or "my message just above (reply to it to carry on there)"
            return Opened(self.chains.thread(chat, f"msg-{root}"), where)
        name = f"Fork of topic {topic}"
        created = await self.bot.create_forum_topic(chat, name)
        await send(self.bot, self.chains, Where(chat, created.message_thread_id, None), text)
        where = link(chat, created.message_thread_id) or f"the topic “{name}”"
        return Opened(self.chains.thread(chat, f"topic-{created.message_thread_id}"), where)

    def reply_in(self, origin: TgOrigin, record: ThreadRecord) -> TelegramReply:
        where = Where.of(record)
        asked = where.root or where.topic or 0
        return self._reply(Target(where.chat, where.topic, asked, where.chat > 0), where.root, record.id)


def _no_chain(message: int) -> None:
    """Replies in a topic need no chain: the topic is the thread."""
