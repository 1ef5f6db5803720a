"""A reply streamed with Slack's chat streaming API: ``chat.startStream`` once, ``appendStream``
with what is new, ``chat.stopStream`` with the final blocks.

Content is Markdown text and task cards, kept in order. The stream starts with the first
content, so the status Slack shows until then (``assistant.threads.setStatus``) is the only
placeholder: nothing is posted to be edited away. Any refusal (a workspace without
streaming, a missing scope, a stream Slack expired) raises ``StreamRefused``, and the reply
falls back to ``chat.update``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from controller.slack.blocks import defuse
from controller.slack.cards import Card


class StreamRefused(Exception):
    """Slack did not take a streaming call; ``error`` is its error code."""

    def __init__(self, error: str) -> None:
        super().__init__(f"Slack refused streaming: {error}")
        self.error = error


@dataclass(frozen=True)
class Recipient:
    """Where the stream goes; Slack needs the user and team when it streams into a channel."""

    channel: str
    thread_ts: str
    user: str
    team: str


class ReplyStream:
    def __init__(self, client: AsyncWebClient, to: Recipient, opening: list[dict[str, Any]]) -> None:
        self.client = client
        self.to = to
        self.ts: str | None = None
        self._pending: list[str | Card] = []
        self._opening = opening  # blocks shown above the content while the turn runs (Stop)

    def add_text(self, text: str) -> None:
        self._pending.append(defuse(text))

    def touch(self, card: Card) -> None:
        if card not in self._pending:
            self._pending.append(card)

    @property
    def has_news(self) -> bool:
        return bool(self._pending)

    def _chunks(self) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        for item in self._pending:
            if isinstance(item, Card):
                chunks.append(item.chunk())
            elif chunks and chunks[-1]["type"] == "markdown_text":
                chunks[-1]["text"] += "\n\n" + item
            else:
                chunks.append({"type": "markdown_text", "text": item})
        self._pending.clear()
        return chunks

    async def flush(self) -> None:
        if not self._pending:
            return
        chunks = self._chunks()
        if self.ts is None:
            opening = [{"type": "blocks", "blocks": self._opening}] if self._opening else []
            resp = await self._call(
                self.client.chat_startStream,
                channel=self.to.channel,
                thread_ts=self.to.thread_ts,
                recipient_user_id=self.to.user,
                recipient_team_id=self.to.team,
                task_display_mode="timeline",
                chunks=opening + chunks,
            )
            self.ts = str(resp["ts"])
        else:
            await self._call(
                self.client.chat_appendStream, channel=self.to.channel, ts=self.ts, chunks=chunks
            )

    async def stop(self, blocks: list[dict[str, Any]]) -> str:
        """Send what is left and end the stream with ``blocks`` under it; returns its ts.
        The caller has given it content by then (a stream cannot start empty)."""
        if self.ts is None:
            await self.flush()
        if self.ts is None:
            raise StreamRefused("nothing_to_stream")
        chunks = self._chunks()
        await self._call(
            self.client.chat_stopStream,
            channel=self.to.channel,
            ts=self.ts,
            chunks=chunks or None,
            blocks=blocks,
        )
        return self.ts

    @staticmethod
    async def _call(method: Any, **kwargs: Any) -> Any:
        try:
            return await method(**kwargs)
        except SlackApiError as exc:
            raise StreamRefused(str(exc.response.get("error") or "unknown")) from exc
