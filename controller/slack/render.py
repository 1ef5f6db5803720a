"""Rendering a turn's events into its Slack thread.

The first message shows the status ("Starting a sandbox..."), then the output
as it streams, by ``chat.update`` at most once per ``interval`` and only when
the workspace's bucket has a token (skipped edits are coalesced into the next
one; the final edit waits for a token). Figures and files code wrote are
uploaded into the thread with ``files_upload_v2``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Callable

from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from controller.events import Display, Done, Error, Event, FilesChanged, Message, Status, Stream
from controller.slack.layout import layout
from controller.slack.ratelimit import TokenBucket
from controller.slack.transcript import Transcript
from controller.stores.base import StoreError, ThreadStore

log = logging.getLogger(__name__)

UPLOAD_LIMIT = 20 * 2**20  # larger files stay in the workspace; Slack threads are no file share
MAX_UPLOADS = 10
NO_OUTPUT = "Done, no output."


class SlackReply:
    def __init__(
        self,
        client: AsyncWebClient,
        channel: str,
        thread_ts: str,
        bucket: TokenBucket,
        interval: float,
        store: ThreadStore,
        thread_id: str,
        on_api_error: Callable[[], None],
    ) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.bucket = bucket
        self.interval = interval
        self.store = store
        self.thread_id = thread_id
        self.on_api_error = on_api_error
        self.transcript = Transcript()
        self._status = ""
        self._finished = False
        self._overflow = False
        self._ts: list[str] = []
        self._shown: list[str] = []
        self._figures = 0
        self._dirty = asyncio.Event()
        self._lock = asyncio.Lock()
        self._last_edit = 0.0
        self._flusher: asyncio.Task[None] | None = None

    @property
    def posted(self) -> bool:
        return bool(self._ts)

    async def start(self, status: str) -> None:
        self._status = status
        await self._flush(wait=True)
        self._flusher = asyncio.create_task(self._flush_forever())

    def note(self, text: str) -> None:
        self.transcript.add_text(text)
        self._dirty.set()

    async def show(self, event: Event) -> None:
        if isinstance(event, Status):
            self._status = event.message
        elif isinstance(event, Stream):
            self.transcript.add_output(event.text)
        elif isinstance(event, Display):
            await self._display(event)
        elif isinstance(event, Error):
            self.transcript.add_error(event)
        elif isinstance(event, Message):
            self.transcript.add_text(event.text)
        elif isinstance(event, FilesChanged):
            await self._upload_changed(event)
        elif isinstance(event, Done):
            return
        self._dirty.set()

    async def finish(self) -> None:
        await self._stop_flusher()
        self._finished = True
        await self._flush(wait=True)
        if self._overflow:
            await self._upload(self.transcript.markdown().encode(), "output.txt", "Full output")

    # -- messages ------------------------------------------------------------------------

    def _markdown(self) -> str:
        if not self.transcript.empty:
            return self.transcript.markdown()
        return NO_OUTPUT if self._finished else self._status

    async def _flush(self, wait: bool) -> bool:
        """Bring the thread's messages up to date; False if an edit was skipped for the rate limit."""
        async with self._lock:
            plan = layout(self._markdown())
            self._overflow = plan.overflow
            for i, text in enumerate(plan.messages):
                if i == len(self._ts):
                    resp = await self.client.chat_postMessage(
                        channel=self.channel, thread_ts=self.thread_ts, text=text
                    )
                    self._ts.append(str(resp["ts"]))
                    self._shown.append(text)
                elif text != self._shown[i]:
                    if wait:
                        await self.bucket.take()
                    elif not self.bucket.try_take():
                        return False
                    await self.client.chat_update(channel=self.channel, ts=self._ts[i], text=text)
                    self._shown[i] = text
            return True

    async def _flush_forever(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(max(0.0, self._last_edit + self.interval - time.monotonic()))
            self._dirty.clear()
            self._last_edit = time.monotonic()
            try:
                done = await self._flush(wait=False)
            except SlackClientError as exc:
                log.warning("streaming edit failed (the final edit retries): %s", exc)
                self.on_api_error()
                done = False
            if not done:
                self._dirty.set()

    async def _stop_flusher(self) -> None:
        if self._flusher is None:
            return
        async with self._lock:  # never cut a post short: its ts would be lost
            self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._flusher

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
            self.transcript.add_output(text if text.endswith("\n") else text + "\n")

    async def _upload(self, data: bytes, filename: str, title: str) -> None:
        try:
            await self.client.files_upload_v2(
                channel=self.channel, thread_ts=self.thread_ts, content=data, filename=filename, title=title
            )
        except SlackClientError as exc:
            log.warning("upload of %s failed: %s", filename, exc)
            self.on_api_error()
            self.note(f"I could not post `{filename}` here: {exc}")

    async def _upload_changed(self, event: FilesChanged) -> None:
        for name, reason in event.refused.items():
            self.note(f"`{name}` was not saved: {reason}.")
        if len(event.changed) > MAX_UPLOADS:
            self.note(
                f"{len(event.changed) - MAX_UPLOADS} more changed files are saved in the thread's files."
            )
        sizes = {f.name: f.size for f in await asyncio.to_thread(self.store.list_files, self.thread_id)}
        for name in event.changed[:MAX_UPLOADS]:
            size = sizes.get(name, 0)
            if size > UPLOAD_LIMIT:
                self.note(
                    f"`{name}` ({size / 2**20:.1f} MiB) is too big to post here; it is saved in the thread's files."
                )
                continue
            try:
                data = await asyncio.to_thread(self.store.read_file, self.thread_id, name)
            except StoreError as exc:
                self.note(f"`{name}` could not be read back from storage ({exc}).")
                continue
            await self._upload(data, name.rsplit("/", 1)[-1], name)
