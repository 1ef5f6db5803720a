"""Chat commands that act on the thread itself instead of asking the agent (README "Chat
commands"): ``forget state`` forgets its kept variables, ``fork`` copies it into a new thread
of the same platform, ``upgrade`` moves it to its profile's current version. Matched as the handoff commands are (``handoff.normal``); the turn
pipeline asks ``Commands.handle`` before the handoff desk, so they work whoever answers.

Each calls ``controller/threadops.py``, as the HTTP API does. A fork opens its chat thread
first (``FrontEnd.open_thread``), since the new thread's key is the fork's identity; if the
copy is then refused, both threads say so and the original is as it was.
"""

from __future__ import annotations

from typing import Generic, Literal

from controller import threadops
from controller.chat.base import CannotOpen, FrontEnd, Incoming, OriginT, ReplyT
from controller.chat.handoff import normal
from controller.fork import ThreadExists, default_name, fork_record
from controller.profiles import ProfileError
from controller.quotas import QuotaExceeded
from controller.stores.base import StoreError
from controller.threadops import ThreadOps
from controller.threads import ThreadRecord, new_record

# What a user types, alone in a message, case and end punctuation aside.
FORGET_COMMANDS = frozenset({"forget state", "/forget"})
FORK_COMMANDS = frozenset({"fork", "/fork"})
UPGRADE_COMMANDS = frozenset({"upgrade", "/upgrade"})
# Refusals worth a sentence; anything else is the pipeline's (claims released, logged).
REFUSED = (ThreadExists, QuotaExceeded, StoreError)

Command = Literal["forget", "fork", "upgrade"]
NOTHING_YET = "This thread has nothing to fork, forget or upgrade yet: ask me something first."


def command(text: str) -> Command | None:
    said = normal(text)
    if said in FORGET_COMMANDS:
        return "forget"
    if said in UPGRADE_COMMANDS:
        return "upgrade"
    return "fork" if said in FORK_COMMANDS else None


def forgotten(stopped: bool) -> str:
    how = "and stopped its sandbox" if stopped else "(no sandbox of it was running)"
    return f"I forgot this thread's variables {how}; its files are kept, and the next message starts a fresh Python."


def fork_intro(source: ThreadRecord) -> str:
    return f"This thread is a fork of “{source.name}”: it starts with a copy of its files and variables."


class Commands(Generic[OriginT, ReplyT]):
    def __init__(self, ops: ThreadOps, front: FrontEnd[OriginT, ReplyT]) -> None:
        self.ops = ops
        self.front = front

    async def handle(self, msg: Incoming[OriginT], record: ThreadRecord | None) -> bool:
        """True if ``msg`` was a command, now answered in its thread; ``record``: the thread's,
        None when this message would start it (no record is made for a command)."""
        said = command(msg.text)
        if said is None:
            return False
        if record is None:  # an unsaved record says where to answer
            await self.front.to_user(msg.origin, new_record(msg.key, msg.name, msg.user), NOTHING_YET)
        elif said == "forget":
            await self.front.to_user(msg.origin, record, await self._forget(record))
        elif said == "upgrade":
            await self.front.to_user(msg.origin, record, await self._upgrade(record))
        else:
            await self._fork(msg, record)
        return True

    async def _forget(self, record: ThreadRecord) -> str:
        try:
            return forgotten(await threadops.forget_state(self.ops, record.id))
        except StoreError as exc:
            return f"I could not forget this thread's variables: {exc}. Try again later."

    async def _upgrade(self, record: ThreadRecord) -> str:
        try:
            return (await threadops.upgrade_thread(self.ops, record)).note
        except (ProfileError, StoreError) as exc:  # the thread keeps its version
            return f"I could not upgrade this thread: {exc}. It keeps its version."

    async def _fork(self, msg: Incoming[OriginT], source: ThreadRecord) -> None:
        try:
            opened = await self.front.open_thread(msg.origin, source, fork_intro(source))
        except CannotOpen as exc:
            await self.front.to_user(msg.origin, source, f"I could not fork this thread: {exc}.")
            return
        target = fork_record(source, opened.key, default_name(source.name), source.user or msg.user)
        try:
            forked = await threadops.fork_thread(self.ops, source, target)
        except REFUSED as exc:
            await self.front.to_user(
                msg.origin, target, f"Forking failed, so nothing was copied here: {exc}."
            )
            await self.front.to_user(
                msg.origin, source, f"I could not fork this thread: {exc}. Nothing changed here."
            )
            return
        await self.front.to_user(msg.origin, source, f"Forked into {opened.where}. {forked.note}")
