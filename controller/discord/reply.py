"""One turn's output in its Discord thread: messages edited as the turn goes, files at the end.

The first message is a status line ("starting a sandbox…"); as output comes it becomes
the turn's text, laid out in messages of at most 2000 characters (``layout.py``), edited
at most once per interval (Discord allows about five edits per five seconds in a channel,
and hikari waits out any 429 by its ``retry_after``). Figures and files the code wrote are
posted at the end, under a note that names them, in messages within Discord's upload
limit; a bigger file stays in the thread's files, and a sentence says so. No message
pings anyone: code output that says ``@everyone`` stays text.
"""

from __future__ import annotations

import base64
import logging

import hikari

from controller.chat.files import files_to_post
from controller.chat.layout import Layout
from controller.chat.throttle import Throttled
from controller.chat.transcript import Transcript
from controller.discord.config import UPLOAD_LIMIT
from controller.discord.layout import batches, layout
from controller.discord.rest import DiscordRest
from controller.events import Code, Display, Error, Event, FilesChanged, Message, Status, Stream
from controller.stores.base import ThreadStore

log = logging.getLogger(__name__)

STARTING = "⏳ Starting a sandbox for this thread…"
WORKING = "⏳ Working on it…"
NO_OUTPUT = "Done, no output."


class DiscordReply:
    def __init__(
        self, rest: DiscordRest, channel: str, store: ThreadStore, thread_id: str, interval: float
    ) -> None:
        self.rest = rest
        self.channel = channel
        self.store = store
        self.thread_id = thread_id
        self.transcript = Transcript()
        self.status = WORKING
        self.files: list[tuple[str, bytes]] = []
        self._ids: list[hikari.Snowflake] = []
        self._shown: list[str] = []
        self._throttle = Throttled(self._flush, interval)
        self._figures = 0
        self._finished = False

    @property
    def started(self) -> bool:
        return bool(self._ids)

    async def start(self, sandbox_live: bool) -> None:
        self.status = WORKING if sandbox_live else STARTING
        await self._sync()
        self._throttle.start()

    def note(self, text: str) -> None:
        self.transcript.add_text(text)
        self._throttle.poke()

    async def show(self, event: Event) -> None:
        if isinstance(event, Status) and event.phase in ("starting", "restoring", "queued"):
            self.status = f"⏳ {event.message}"
        elif isinstance(event, Code):
            self.transcript.add_cell(event.code)
        elif isinstance(event, Stream):
            self.transcript.add_output(event.text)
        elif isinstance(event, Display):
            self._display(event)
        elif isinstance(event, Error):
            self.transcript.add_error(event)
        elif isinstance(event, Message):
            self.transcript.add_text(event.text)
        elif isinstance(event, FilesChanged):
            async for name, data in files_to_post(self.store, self.thread_id, event, UPLOAD_LIMIT, self.note):
                self.files.append((name.rsplit("/", 1)[-1], data))
        self._throttle.poke()

    async def finish(self) -> None:
        await self._throttle.stop()
        self._finished = True
        plan = await self._sync()
        if plan.overflow:
            self.files.append(("output.txt", self.transcript.markdown().encode()))
        for group in batches(self.files, UPLOAD_LIMIT):
            await self._post_files(group)

    async def _post_files(self, group: list[tuple[str, bytes]]) -> None:
        names = ", ".join(f"`{name}`" for name, _ in group)
        try:
            await self.rest.post(self.channel, f"📎 Files from this turn: {names}", group)
        except hikari.ClientHTTPResponseError as exc:  # refused (too large...): say so, go on
            log.warning("posting %s failed: %s", names, exc)
            await self.rest.post(self.channel, f"I could not post {names} here: {exc.message}")

    def _display(self, event: Display) -> None:
        png = event.data.get("image/png")
        text = event.data.get("text/plain")
        if isinstance(png, str):
            self._figures += 1
            self.files.append((f"figure-{self._figures}.png", base64.b64decode(png)))
        elif isinstance(text, str):
            self.transcript.add_output(text if text.endswith("\n") else text + "\n")

    def _markdown(self) -> str:
        if not self.transcript.empty:
            return self.transcript.markdown()
        if not self._finished:
            return self.status
        return "Done." if self.files else NO_OUTPUT

    async def _flush(self) -> bool:
        """One throttled round; False (try again next round) if Discord refused a call."""
        try:
            await self._sync()
        except hikari.HTTPError as exc:
            log.warning("updating the Discord reply failed (the final update retries): %s", exc)
            return False
        return True

    async def _sync(self) -> Layout:
        """Post or edit the messages so that they show the text as it is now."""
        plan = layout(self._markdown())
        for i, text in enumerate(plan.messages):
            if i == len(self._ids):
                message = await self.rest.post(self.channel, text)
                self._ids.append(message.id)
                self._shown.append(text)
            elif self._shown[i] != text:
                await self.rest.edit(self.channel, self._ids[i], text)
                self._shown[i] = text
        return plan
