"""Telegram's side of operator handoff (controller/chat/desk.py): handed-off threads go to the
chat ``THREADBOX_TELEGRAM_OPERATOR_CHAT``, one reply chain there per user thread (its "desk",
``<chat>:<first message id>``), and operators answer by replying to any message of that
chain. Every message the bot sends is linked into its chain in the store (``Chains``), in the
operator chat as in the user's, so a reply to it finds its thread from any replica.

Messages in the operator chat never start agent turns: a reply in a desk is an operator's
message, anything else there is the operators' own conversation.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from telegram import Bot, ReplyParameters

from controller.telegram.chains import Chains
from controller.telegram.reply import pages
from controller.threads import ThreadRecord


@dataclass(frozen=True)
class Where:
    """A thread's place in its chat: a forum topic, or a reply chain from ``root``."""

    chat: int
    topic: int | None
    root: int | None

    @classmethod
    def of(cls, record: ThreadRecord) -> Where:
        """From the thread's key (``chains.py``: ``topic-<id>`` or ``msg-<root>``)."""
        kind, _, number = record.thread.partition("-")
        return cls(
            int(record.channel),
            int(number) if kind == "topic" else None,
            int(number) if kind == "msg" else None,
        )


def link(chat: int, message: int) -> str | None:
    """A t.me link to a message, or to a topic by its id; only supergroups (ids -100…) have them."""
    raw = str(chat)
    return f"https://t.me/c/{raw[4:]}/{message}" if raw.startswith("-100") else None


def desk_name(chat: int, root: int) -> str:
    return f"{chat}:{root}"


def desk_root(desk: str | None, chat: int) -> int | None:
    """The first message of ``desk`` if it is in ``chat`` (a desk of an earlier operator chat
    is left behind: a new chain starts in the current one)."""
    where, _, root = (desk or "").partition(":")
    return int(root) if where == str(chat) and root.isdigit() else None


async def send(bot: Bot, chains: Chains, to: Where, text: str) -> int:
    """Send ``text`` in pages into ``to``, each page linked into its chain; the chain's root
    (the first page's id when ``to`` starts a new chain)."""
    root = to.root
    for page in pages(text):
        reply = ReplyParameters(root, allow_sending_without_reply=True) if root else None
        sent = await bot.send_message(to.chat, page, message_thread_id=to.topic, reply_parameters=reply)
        root = root if root is not None or to.topic is not None else sent.message_id
        if root is not None:
            await asyncio.to_thread(chains.link, to.chat, sent.message_id, root)
    return root or 0
