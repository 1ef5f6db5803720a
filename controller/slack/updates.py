"""The reply as ordinary messages edited by ``chat.update``: where streaming is refused.

The text is laid out as up to three messages (controller/slack/layout.py). Each carries
the Markdown in a ``markdown`` block and the same text, escaped, as the notification
fallback. Edits are limited by the workspace's token bucket: skipped and coalesced while
it is empty; the final edit waits for a token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from controller.slack.blocks import markdown_block
from controller.slack.layout import layout, unescape
from controller.slack.ratelimit import TokenBucket


@dataclass
class UpdatedMessages:
    client: AsyncWebClient
    channel: str
    thread_ts: str
    bucket: TokenBucket
    ts: list[str] = field(default_factory=list)
    overflow: bool = False
    _shown: list[list[dict[str, Any]]] = field(default_factory=list)

    async def flush(
        self, markdown: str, wait: bool, top: list[dict[str, Any]], bottom: list[dict[str, Any]]
    ) -> bool:
        """Bring the messages up to date, ``top`` blocks on the first and ``bottom`` on the last;
        False if an edit was skipped for the rate limit."""
        plan = layout(markdown)
        self.overflow = plan.overflow
        last = len(plan.messages) - 1
        for i, text in enumerate(plan.messages):
            blocks = [
                *(top if i == 0 else []),
                markdown_block(unescape(text)),
                *(bottom if i == last else []),
            ]
            if i == len(self.ts):
                resp = await self.client.chat_postMessage(
                    channel=self.channel, thread_ts=self.thread_ts, text=text, blocks=blocks
                )
                self.ts.append(str(resp["ts"]))
                self._shown.append(blocks)
            elif blocks != self._shown[i]:
                if wait:
                    await self.bucket.take()
                elif not self.bucket.try_take():
                    return False
                await self.client.chat_update(channel=self.channel, ts=self.ts[i], text=text, blocks=blocks)
                self._shown[i] = blocks
        return True
