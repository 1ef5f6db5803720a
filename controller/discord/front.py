"""The Discord front-end on the chat seam: a command opens (or finds) its thread, then the
shared pipeline (controller/chat/turns.py) runs the turn and this module's reply shows it.

The interaction is claimed in the store before anything else (``discord-interaction/<id>``),
so a duplicated delivery, on any replica, opens no second thread and runs nothing. Opening
needs Discord's REST API (the ``@original`` response message becomes the thread's first
message), so it happens in an owned task after the deferred answer, never in the request.
``/run`` runs its code as it is; ``/ask`` goes to the configured agent; ``/fork``, ``/forget``
and ``/upgrade`` are the chat commands (controller/chat/commands.py), taken in the thread or DM
they are used in, where a fork opens a new thread in the same channel.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import hikari

from controller.agent.direct import DirectAgent
from controller.chat import download
from controller.chat.base import AttachmentError, CannotOpen, FrontEnd, Incoming, Opened
from controller.chat.turns import Conversations, Pipeline
from controller.discord.config import DiscordConfig
from controller.discord.interactions import (
    THREAD_NAME_LIMIT,
    Attachment,
    Command,
    echo,
    thread_name,
    turn_text,
)
from controller.discord.reply import DiscordReply
from controller.discord.rest import DiscordRest
from controller.identity import ThreadKey
from controller.tasks import TaskSet
from controller.threads import ThreadRecord

if TYPE_CHECKING:
    from controller.runtime import Runtime

log = logging.getLogger(__name__)

DRAIN_SECONDS = 30.0
OUTSIDE_A_THREAD = "`/{}` is about a conversation: use it in a thread I opened, where that conversation is."


@dataclass(frozen=True)
class Origin:
    command: Command
    channel: str  # where the turn's reply goes: its thread, or the DM


@dataclass(frozen=True)
class DiscordFile:
    """A command's attachment; its URL came in the signed interaction (Discord's CDN)."""

    attachment: Attachment
    limit: int  # 0: none

    @property
    def label(self) -> str:
        return self.attachment.filename

    @property
    def name(self) -> str:
        return self.attachment.filename

    @property
    def size(self) -> int:
        return self.attachment.size

    async def fetch(self) -> bytes:
        async with download.client() as client, client.stream("GET", self.attachment.url) as resp:
            if resp.status_code != 200:
                raise AttachmentError(f"Discord answered HTTP {resp.status_code} to the download")
            return await download.read(resp, self.limit)


class DiscordFront(FrontEnd[Origin, DiscordReply]):
    def __init__(self, runtime: Runtime, config: DiscordConfig) -> None:
        self.store = runtime.store
        self.metrics = runtime.metrics
        self.config = config
        self._app: hikari.RESTApp | None = None
        self._rest: hikari.api.RESTClient | None = None
        self._calls: DiscordRest | None = None
        pipeline = Pipeline.of(runtime)
        self.conversations = {
            "ask": Conversations(pipeline, self, "Discord /ask turns"),
            "run": Conversations(
                replace(pipeline, agent=DirectAgent(runtime.manager)), self, "Discord /run turns"
            ),
        }
        self._opening = TaskSet("Discord threads being opened")

    @property
    def rest(self) -> DiscordRest:
        if self._calls is None:
            raise RuntimeError("the Discord front-end is not started")
        return self._calls

    async def start(self) -> None:
        # Made here, not in __init__: hikari binds its HTTP session to the running loop.
        self._app = hikari.RESTApp(url=self.config.api_url)
        await self._app.start()
        rest = self._app.acquire(self.config.token, hikari.TokenType.BOT)
        rest.start()
        self._rest, self._calls = rest, DiscordRest(rest)

    async def stop(self) -> None:
        await self._opening.drain(DRAIN_SECONDS)
        await asyncio.gather(*(c.drain(DRAIN_SECONDS) for c in self.conversations.values()))
        if self._rest is not None:
            await self._rest.close()
        if self._app is not None:
            await self._app.close()

    async def receive(self, command: Command) -> bool:
        """Take the command unless another delivery of it was taken; returns at once."""
        if not await asyncio.to_thread(self.store.claim, command.claim):
            return False
        self._opening.spawn(self._open_and_take(command))
        return True

    async def _open_and_take(self, command: Command) -> None:
        if command.acts_on_thread and command.needs_thread:
            await self._tell(command, OUTSIDE_A_THREAD.format(command.name))
            return
        try:
            channel = await self._open(command)
        except hikari.HTTPError as exc:
            log.exception("could not open a Discord thread for /%s in %s", command.name, command.channel)
            self.count_error("open_failed")
            await self._tell(command, f"I could not open a thread for this here: {exc}")
            return
        files = [DiscordFile(a, self.config.max_file_bytes) for a in command.attachments]
        incoming = Incoming(
            key=command.key(channel),
            user=command.user,
            text=turn_text(command),
            message=command.id,
            claims=(),  # claimed on arrival, before the thread was opened
            name=f"discord {thread_name(command)}",
            origin=Origin(command, channel),
            attachments=files,
        )
        await self.conversations["run" if command.name == "run" else "ask"].take(incoming)

    async def _open(self, command: Command) -> str:
        """The channel the turn's reply goes to; a command in a guild's channel opens a thread
        from its response message."""
        original = await self.rest.edit_original(command.application_id, command.token, echo(command))
        if not command.needs_thread:
            return command.channel
        return await self.rest.open_thread(command.channel, original.id, thread_name(command))

    async def _tell(self, command: Command, text: str) -> None:
        try:
            await self.rest.edit_original(command.application_id, command.token, text)
        except hikari.HTTPError:
            log.exception("could not tell the user either")
            self.count_error("api_call")

    def reply(self, msg: Incoming[Origin], thread_id: str) -> DiscordReply:
        return DiscordReply(self.rest, msg.origin.channel, self.store, thread_id, self.config.update_interval)

    async def open_thread(self, origin: Origin, beside: ThreadRecord, text: str) -> Opened:
        """A new thread in the channel of ``beside``'s thread, keyed as a command there is
        (``Command.key``); a DM has no threads."""
        command = origin.command
        if not command.in_thread or command.parent is None:
            raise CannotOpen("a direct message holds one conversation; fork in a thread of a server channel")
        name = f"fork: {beside.name.removeprefix('discord ')}"[:THREAD_NAME_LIMIT]
        thread = await self.rest.new_thread(command.parent, name)
        await self.rest.post(thread, text)
        return Opened(ThreadKey("discord", command.guild or "@me", command.parent, thread), f"<#{thread}>")

    async def to_user(self, origin: Origin, record: ThreadRecord, text: str) -> None:
        await self.rest.post(record.thread, text)  # the thread's channel (a DM's own id)

    def count_error(self, kind: str) -> None:
        self.metrics.discord_errors.labels(kind).inc()
