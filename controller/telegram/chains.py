"""Where a Telegram message belongs: which thread, and whether it is answered.

A thread is a forum topic where the chat has topics. Elsewhere it is a reply chain: a
mention of the bot or ``/new`` starts one at that message, and a reply to any message of
the chain (the user's or the bot's) continues it. In a private chat every message is
for the bot: it continues the chat's current thread, and ``/new`` starts the next one.

The chains live in the thread store (``telegram-chain/<bot>/<chat>/<message>`` -> the
root message), so every replica and a restart see them. Blocking: call in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from controller.identity import ThreadKey
from controller.stores.base import ThreadStore
from controller.telegram.inbound import TgMessage


def segment(n: int) -> str:
    """A chat id as a state-key segment (group ids are negative; keys start alphanumeric)."""
    return f"n{-n}" if n < 0 else str(n)


@dataclass(frozen=True)
class Place:
    key: ThreadKey
    root: int | None  # the chain's first message; None in a topic
    rule: Literal["always", "if_active"]


@dataclass(frozen=True)
class Chains:
    store: ThreadStore
    bot_id: int

    def _key(self, kind: str, chat: int, *rest: int) -> str:
        return "/".join([f"telegram-{kind}", str(self.bot_id), segment(chat), *map(str, rest)])

    def root_of(self, chat: int, message: int) -> int | None:
        found = self.store.get_state(self._key("chain", chat, message))
        return int(found["root"]) if isinstance(found, dict) else None

    def link(self, chat: int, message: int, root: int) -> None:
        self.store.put_state(self._key("chain", chat, message), {"root": root})

    def current(self, chat: int) -> int | None:
        found = self.store.get_state(self._key("current", chat))
        return int(found["root"]) if isinstance(found, dict) else None

    def place(self, msg: TgMessage) -> Place | None:
        """Where ``msg`` goes, recording it in its chain; None: not for the bot."""
        if msg.topic is not None:
            rule: Literal["always", "if_active"] = "always" if msg.addressed else "if_active"
            return Place(self.thread(msg.chat_id, f"topic-{msg.topic}"), None, rule)
        root = self._root(msg)
        if root is None:
            return None
        self.link(msg.chat_id, msg.message_id, root)
        return Place(self.thread(msg.chat_id, f"msg-{root}"), root, "always")

    def _root(self, msg: TgMessage) -> int | None:
        linked = self.root_of(msg.chat_id, msg.reply_to) if msg.reply_to else None
        if msg.private:
            root = msg.message_id if msg.new else linked or self.current(msg.chat_id) or msg.message_id
            self.store.put_state(self._key("current", msg.chat_id), {"root": root})
            return root
        if msg.new or (msg.mentioned and linked is None):
            return msg.message_id
        return linked

    def thread(self, chat: int, thread: str) -> ThreadKey:
        return ThreadKey("telegram", str(self.bot_id), str(chat), thread)
