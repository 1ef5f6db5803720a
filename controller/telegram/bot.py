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

from controller.chat.base import FrontEnd, Incoming
from controller.chat.turns import Conversations, Outcome, Pipeline
from controller.telegram.attachments import TelegramFile
from controller.telegram.chains import Chains, Place
from controller.telegram.inbound import Me, TgMessage, parse
from controller.telegram.reply import Hooks, Target, TelegramReply

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
        self.turns = Conversations(Pipeline.of(runtime), self, "Telegram answers")

    async def receive(self, update: dict[str, Any]) -> Outcome:
        msg = parse(update, self.me)
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

    async def drain(self) -> None:
        await self.turns.drain()

    def reply(self, msg: Incoming[TgOrigin], thread_id: str) -> TelegramReply:
        tg, root = msg.origin.msg, msg.origin.place.root
        link = partial(self.chains.link, tg.chat_id, root=root) if root is not None else _no_chain
        to = Target(tg.chat_id, tg.topic, tg.message_id, tg.private)
        return TelegramReply(
            self.bot,
            to,
            self.interval,
            self.rt.store,
            thread_id,
            Hooks(link, partial(self.count_error, "api_call")),
        )


def _no_chain(message: int) -> None:
    """Replies in a topic need no chain: the topic is the thread."""
