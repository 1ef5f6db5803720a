"""The thread's status line under the user's message (``assistant.threads.setStatus``).

Slack shows it, with the loading messages rotating, until the bot's reply appears, so no
placeholder message is posted and edited away. It is cosmetic: a workspace that refuses
it (an old plan, a missing scope) gets no status, and the turn goes on. But the first
call is also the turn's first word with Slack, made before anything runs: if Slack is
unreachable or broken then, the turn fails and its claims are released for Slack's retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from controller.events import Status

log = logging.getLogger(__name__)

STARTING = "is starting a sandbox…"
WORKING = "is working on it…"
RUNNING = "is running code…"
# Refusals of the status itself, not of Slack: the turn goes on without a status line.
REFUSALS = {"missing_scope", "not_allowed", "not_allowed_token_type", "unknown_method", "invalid_arguments"}
LOADING = {
    STARTING: ["Starting a sandbox…", "Warming up a Python kernel…", "Almost ready…"],
    "is restoring your files…": ["Restoring your files…", "Bringing back this thread's workspace…"],
    RUNNING: ["Running your code…", "Still running…"],
}


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def status_text(event: Status) -> str | None:
    if event.phase == "starting":
        return STARTING
    if event.phase == "restoring":
        return "is restoring your files…"
    if event.phase == "queued":
        return f"is queued ({ordinal(event.queue_position)})" if event.queue_position else "is queued…"
    return None  # ready, persisting: nothing the user waits on


class StatusLine:
    def __init__(
        self, client: AsyncWebClient, channel: str, thread_ts: str, on_api_error: Callable[[], None]
    ) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.on_api_error = on_api_error
        self.shown = ""
        self._refused = False

    async def first(self, text: str) -> None:
        """The turn's first status: raises unless Slack answered, if only with a refusal."""
        try:
            await self._send(text)
        except SlackApiError as exc:
            if exc.response.get("error") not in REFUSALS:
                raise
            self._refuse(exc)

    async def set(self, text: str) -> None:
        try:
            await self._send(text)
        except (SlackClientError, aiohttp.ClientError) as exc:
            self._refuse(exc)

    async def _send(self, text: str) -> None:
        if text == self.shown or self._refused:
            return
        self.shown = text
        await self.client.assistant_threads_setStatus(
            channel_id=self.channel, thread_ts=self.thread_ts, status=text, loading_messages=LOADING.get(text)
        )

    def _refuse(self, exc: Exception) -> None:
        log.warning("setting the thread's status failed; no more status for this turn: %s", exc)
        self.on_api_error()
        self._refused = True
