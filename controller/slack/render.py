"""Rendering a turn's events into its Slack thread.

Until the reply has content, the thread's status line says what is happening
(controller/slack/status.py). The reply streams (controller/slack/stream.py): a task card
per code execution, the agent's text as Markdown. Where Slack refuses streaming, the
reply falls back to messages edited by ``chat.update`` (controller/slack/updates.py),
which show the same turn as text, and the turn still completes. Either way a Stop button
shows while the turn runs and feedback buttons come with the final message. Figures and
files code wrote are uploaded into the thread with ``files_upload_v2``.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from controller.chat.files import files_to_post
from controller.chat.throttle import Throttled
from controller.chat.transcript import Transcript, describe_error, trim_traceback
from controller.events import Code, Display, Done, Error, Event, FilesChanged, Message, Status, Stream
from controller.slack.blocks import feedback_block, stop_actions
from controller.slack.cards import Card
from controller.slack.ratelimit import TokenBucket
from controller.slack.status import RUNNING, STARTING, WORKING, StatusLine, status_text
from controller.slack.stream import Recipient, ReplyStream, StreamRefused
from controller.slack.updates import UpdatedMessages
from controller.stores.base import ThreadStore

log = logging.getLogger(__name__)

UPLOAD_LIMIT = 20 * 2**20  # larger files stay in the workspace; Slack threads are no file share
NO_OUTPUT = "Done, no output."


@dataclass(frozen=True)
class Hooks:
    """What the reply reports: a failed Web API call, and a refused stream (with Slack's error)."""

    on_api_error: Callable[[], None]
    on_stream_refused: Callable[[str], None]


class SlackReply:
    def __init__(
        self,
        client: AsyncWebClient,
        to: Recipient,
        bucket: TokenBucket,
        interval: float,
        store: ThreadStore,
        thread_id: str,
        hooks: Hooks,
        streaming: bool,
        stop: str,
    ) -> None:
        self.client = client
        self.to = to
        self.store = store
        self.thread_id = thread_id
        self.hooks = hooks
        self.transcript = Transcript()
        self.status = StatusLine(client, to.channel, to.thread_ts, hooks.on_api_error)
        self.streaming = streaming
        self.final_ts: str | None = None
        self._stop = stop_actions(stop)
        self._stream = ReplyStream(client, to, [self._stop])
        self._messages = UpdatedMessages(client, to.channel, to.thread_ts, bucket)
        self._throttle = Throttled(self._flush, interval)
        self._cards: list[Card] = []
        self._card: Card | None = None
        self._held = False  # the current card waits for its sandbox
        self._sandbox_ready = False
        self._failed = False
        self._started = False
        self._finished = False
        self._figures = 0

    @property
    def posted(self) -> bool:
        return self._stream.ts is not None or bool(self._messages.ts)

    @property
    def started(self) -> bool:
        """Slack answered the turn's first call; before that nothing of the turn has run."""
        return self._started

    def on_api_error(self) -> None:
        self.hooks.on_api_error()

    async def start(self, sandbox_live: bool) -> None:
        """``sandbox_live``: code runs at once. Otherwise the first card waits until the sandbox
        is ready, so that the status line says "starting", "restoring", "queued" meanwhile."""
        self._sandbox_ready = sandbox_live
        await self.status.first(WORKING if sandbox_live else STARTING)
        self._started = True
        self._throttle.start()

    def note(self, text: str) -> None:
        self.transcript.add_text(text)
        self._stream.add_text(text)
        self._throttle.poke()

    async def show(self, event: Event) -> None:
        if _runs_code(event):
            await self._reveal()
        if isinstance(event, Status):
            await self._show_status(event)
        elif isinstance(event, Code):
            await self._open_card(event.code)
        elif isinstance(event, Stream):
            self._output(event.text)
        elif isinstance(event, Display):
            await self._display(event)
        elif isinstance(event, Error):
            self._error(event)
        elif isinstance(event, Message):
            self._close_card()
            self.note(event.text)
        elif isinstance(event, FilesChanged):
            await self._upload_changed(event)
        elif isinstance(event, Done):
            self._close_card()
        self._throttle.poke()

    async def finish(self) -> None:
        await self._throttle.stop()
        self._close_card()
        self._finished = True
        if self.streaming:
            try:
                self.final_ts = await self._stop_stream()
            except StreamRefused as exc:
                self._fall_back(exc)
        if not self.streaming:
            await self._messages.flush(self._markdown(), True, [], [feedback_block(self.thread_id)])
            self.final_ts = self._messages.ts[-1]
        if self._output_cut():
            await self._upload(self.transcript.markdown().encode(), "output.txt", "Full output")

    def _output_cut(self) -> bool:
        """Whether the thread shows less than the whole output. Only a streamed reply's cards cut
        it; a reply that fell back shows the whole transcript, though a refused stream call may
        have rendered (and cut) a card before the fallback."""
        if self.streaming:
            return any(card.cut for card in self._cards)
        return self._messages.overflow

    # -- content ---------------------------------------------------------------------------

    async def _show_status(self, event: Status) -> None:
        text = status_text(event)
        if text and not self.posted:
            await self.status.set(text)

    async def _open_card(self, code: str) -> None:
        self._close_card()
        self._card = Card(f"cell-{len(self._cards) + 1}", code)
        self._cards.append(self._card)
        self._failed = False
        self._held = True
        if self._sandbox_ready:
            await self._reveal()

    async def _reveal(self) -> None:
        """The sandbox runs the code now: its card shows (and, unstreamed, the status says so)."""
        self._sandbox_ready = True
        if self._card is None or not self._held:
            return
        self._held = False
        self._stream.touch(self._card)
        if not self.posted and not self.streaming:
            await self.status.set(RUNNING)

    def _close_card(self) -> None:
        if self._card is not None:
            self._card.finish(self._failed)
            self._stream.touch(self._card)
            self._card = None

    def _output(self, text: str) -> None:
        self.transcript.add_output(text)
        if self._card is None:
            return
        self._card.add_output(text)
        if self._card.preview_due():
            self._stream.touch(self._card)

    def _error(self, error: Error) -> None:
        self.transcript.add_error(error)
        if self._card is None:
            self._stream.add_text(describe_error(error))
            return
        self._failed = True
        trace = trim_traceback(error.traceback) if error.kind == "exception" and error.traceback else ""
        self._card.add_output("\n".join(p for p in (trace, describe_error(error)) if p) + "\n")
        self._stream.touch(self._card)

    def _markdown(self) -> str:
        if not self.transcript.empty:
            return self.transcript.markdown()
        return NO_OUTPUT if self._finished else ""

    # -- sending -----------------------------------------------------------------------------

    async def _flush(self) -> bool:
        """One throttled round: False if something waits for the next (rate budget, a failed edit)."""
        try:
            if self.streaming:
                return await self._flush_stream()
            markdown = self._markdown()
            return not markdown or await self._messages.flush(markdown, False, [self._stop], [])
        except (SlackClientError, aiohttp.ClientError) as exc:
            log.warning("streaming the reply failed (the final call retries): %s", exc)
            self.on_api_error()
            return False

    async def _flush_stream(self) -> bool:
        try:
            await self._stream.flush()
        except StreamRefused as exc:
            self._fall_back(exc)
            return False  # the next round posts it all by chat.update
        return True

    async def _stop_stream(self) -> str:
        if self._stream.ts is None and not self._stream.has_news:
            self._stream.add_text(NO_OUTPUT)
        return await self._stream.stop([feedback_block(self.thread_id)])

    def _fall_back(self, exc: StreamRefused) -> None:
        log.warning("%s in %s; this reply goes on by chat.update", exc, self.to.channel)
        self.streaming = False
        self.hooks.on_stream_refused(exc.error)

    # -- files -----------------------------------------------------------------------------

    async def _display(self, event: Display) -> None:
        png = event.data.get("image/png")
        if isinstance(png, str):
            self._figures += 1
            name = f"figure-{self._figures}.png"
            await self._upload(base64.b64decode(png), name, name)
            return
        text = event.data.get("text/plain")
        if isinstance(text, str):
            self._output(text if text.endswith("\n") else text + "\n")

    async def _upload(self, data: bytes, filename: str, title: str) -> None:
        try:
            await self.client.files_upload_v2(
                channel=self.to.channel,
                thread_ts=self.to.thread_ts,
                content=data,
                filename=filename,
                title=title,
            )
        except SlackClientError as exc:
            log.warning("upload of %s failed: %s", filename, exc)
            self.on_api_error()
            self.note(f"I could not post `{filename}` here: {exc}")

    async def _upload_changed(self, event: FilesChanged) -> None:
        async for name, data in files_to_post(self.store, self.thread_id, event, UPLOAD_LIMIT, self.note):
            await self._upload(data, name.rsplit("/", 1)[-1], name)


def _runs_code(event: Event) -> bool:
    """The event shows the sandbox is running the current code (not still getting ready)."""
    return event.phase == "ready" if isinstance(event, Status) else not isinstance(event, Code)
