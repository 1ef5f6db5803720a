"""Rendering a turn's events into its Telegram thread.

The reply is plain text (no parse mode: code and output keep every character), split into
messages of at most ``PAGE`` characters. It streams by editing those messages
(``editMessageText``), throttled to ``update_interval``. In private chats it streams as a
draft instead (``sendMessageDraft``, Bot API 9.3), and the finished text is sent as
messages; where the server refuses drafts the reply falls back to edits. Figures go out as
photos (``sendPhoto``), files code wrote as documents (``sendDocument``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from telegram import Bot, Message, ReplyParameters
from telegram.error import BadRequest, InvalidToken, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

from controller.chat.files import files_to_post
from controller.chat.throttle import Throttled
from controller.chat.transcript import Transcript
from controller.events import Code, Display, Error, Event, FilesChanged, Status, Stream
from controller.events import Message as AgentMessage
from controller.stores.base import ThreadStore

log = logging.getLogger(__name__)

PAGE = 4000  # Telegram's limit is 4096 characters a message
UPLOAD_LIMIT = 50 * 2**20  # what the Bot API takes from a bot
STARTING = "Starting a sandbox…"
WORKING = "Working on it…"
NO_OUTPUT = "Done, no output."
WAITING = ("queued", "starting", "restoring")
RETRIES = 3  # answers of 429 waited out per call
MAX_WAIT = 30.0  # seconds; a longer wait fails the call instead

T = TypeVar("T")


def pages(text: str) -> list[str]:
    """``text`` in pieces of at most PAGE characters, cut at a line break where there is one."""
    out: list[str] = []
    while len(text) > PAGE:
        cut = text.rfind("\n", 0, PAGE)
        cut = cut if cut > 0 else PAGE
        out.append(text[:cut])
        text = text[cut:].lstrip("\n")
    return [*out, text]


async def patiently(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, made again after the wait Telegram asks for when it answers 429 (flood
    control: about 1 message a second per chat, 20 a minute per group)."""
    for _ in range(RETRIES):
        try:
            return await call()
        except RetryAfter as exc:
            if wait_of(exc) > MAX_WAIT:
                raise
            await asyncio.sleep(wait_of(exc))
    return await call()


def wait_of(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)  # an int now, a timedelta in PTB 23
        wait = exc.retry_after
    return wait.total_seconds() if isinstance(wait, timedelta) else float(wait)


@dataclass(frozen=True)
class Target:
    chat_id: int
    topic: int | None  # the forum topic, if any
    asked: int  # the user's message, which the reply answers
    private: bool


@dataclass(frozen=True)
class Hooks:
    """What the reply reports: each message it sent (for the reply chain), a failed call."""

    sent: Callable[[int], None]  # blocking (the store): called in a thread
    on_api_error: Callable[[], None]


class TelegramReply:
    def __init__(
        self, bot: Bot, to: Target, interval: float, store: ThreadStore, thread_id: str, hooks: Hooks
    ) -> None:
        self.bot = bot
        self.to = to
        self.store = store
        self.thread_id = thread_id
        self.hooks = hooks
        self.transcript = Transcript()
        self.status = STARTING
        self.sent: list[tuple[int, str]] = []  # (message id, text shown) of each page
        self.drafting = to.private
        self.started = False
        self._throttle = Throttled(self._flush, interval)
        self._figures = 0

    async def start(self, sandbox_live: bool) -> None:
        self.status = WORKING if sandbox_live else STARTING
        if not (self.drafting and await self._draft(self.status)):
            await self._sync([self.status])
        self.started = True
        self._throttle.start()

    def note(self, text: str) -> None:
        self.transcript.add_text(text)
        self._throttle.poke()

    async def show(self, event: Event) -> None:
        if isinstance(event, Status) and event.phase in WAITING:
            self.status = event.message
        elif isinstance(event, Code):
            self.transcript.add_cell(event.code)
        elif isinstance(event, Stream):
            self.transcript.add_output(event.text)
        elif isinstance(event, Display):
            await self._display(event.data)
        elif isinstance(event, Error):
            self.transcript.add_error(event)
        elif isinstance(event, AgentMessage):
            self.transcript.add_text(event.text)
        elif isinstance(event, FilesChanged):
            await self._post_files(event)
        self._throttle.poke()

    async def finish(self) -> None:
        await self._throttle.stop()
        self.drafting = False  # a draft is a preview: the answer itself is sent as messages
        await self._sync(pages(self._text(NO_OUTPUT)))

    def _text(self, empty: str) -> str:
        return self.transcript.markdown() if not self.transcript.empty else empty

    # -- sending text -------------------------------------------------------------------------

    async def _flush(self) -> bool:
        text = self._text(self.status)
        try:
            if self.drafting and await self._draft(pages(text)[-1]):
                return True
            await self._sync(pages(text))
        except TelegramError as exc:
            log.warning("updating the reply failed (the next round retries): %s", exc)
            self.hooks.on_api_error()
            return False
        return True

    async def _draft(self, text: str) -> bool:
        """Show ``text`` as the chat's draft; False once the server refuses drafts."""
        try:
            await self.bot.send_message_draft(self.to.chat_id, self.to.asked, text, self.to.topic)
        except (BadRequest, InvalidToken) as exc:  # a server without drafts answers 404: InvalidToken
            log.info("drafts refused in %s (%s); this reply goes on by edits", self.to.chat_id, exc.message)
            self.drafting = False
            return False
        return True

    async def _sync(self, texts: list[str]) -> None:
        """Make the reply's messages show ``texts``: edit the changed ones, send the new ones."""
        for i, text in enumerate(texts):
            if i >= len(self.sent):
                message = await patiently(
                    partial(self.bot.send_message, self.to.chat_id, text, **self._where())
                )
                self.sent.append((message.message_id, text))
                await asyncio.to_thread(self.hooks.sent, message.message_id)
            elif self.sent[i][1] != text:
                await patiently(partial(self.bot.edit_message_text, text, self.to.chat_id, self.sent[i][0]))
                self.sent[i] = (self.sent[i][0], text)

    def _where(self) -> dict[str, Any]:
        return {
            "message_thread_id": self.to.topic,
            "reply_parameters": ReplyParameters(self.to.asked, allow_sending_without_reply=True),
        }

    # -- files ----------------------------------------------------------------------------------

    async def _display(self, data: dict[str, Any]) -> None:
        png, text = data.get("image/png"), data.get("text/plain")
        if isinstance(png, str):
            self._figures += 1
            name = f"figure-{self._figures}.png"
            await self._post(self.bot.send_photo, base64.b64decode(png), name)
        elif isinstance(text, str):
            self.transcript.add_output(text if text.endswith("\n") else text + "\n")

    async def _post_files(self, event: FilesChanged) -> None:
        async for name, data in files_to_post(self.store, self.thread_id, event, UPLOAD_LIMIT, self.note):
            await self._post(self.bot.send_document, data, name.rsplit("/", 1)[-1])

    async def _post(self, send: Callable[..., Any], data: bytes, filename: str) -> None:
        try:
            message: Message = await patiently(
                partial(send, self.to.chat_id, data, filename=filename, **self._where())
            )
        except TelegramError as exc:
            log.warning("posting %s failed: %s", filename, exc)
            self.hooks.on_api_error()
            self.note(f"I could not post `{filename}` here: {exc.message}")
            return
        await asyncio.to_thread(self.hooks.sent, message.message_id)
