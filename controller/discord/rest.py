"""The Discord REST calls threadbox makes, through hikari's REST client.

Every message goes out with mentions off: code output or an agent's text that says
``@everyone`` or ``<@id>`` is shown, and pings nobody. hikari waits out a 429 by its
``retry_after`` (up to ``max_rate_limit``) and retries the call itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import hikari

# The turn's task can call before our deferred answer has reached Discord, which then
# knows no response message yet (404): wait 0.2, 0.4, 0.8, 1.6 s between tries.
ORIGINAL_TRIES = 5
FIRST_WAIT = 0.2


class DiscordRest:
    def __init__(self, rest: hikari.api.RESTClient) -> None:
        self.rest = rest

    async def post(self, channel: str, text: str, files: Sequence[tuple[str, bytes]] = ()) -> hikari.Message:
        attachments = [hikari.Bytes(data, name) for name, data in files]
        return await self.rest.create_message(
            int(channel),
            text,
            attachments=attachments or hikari.UNDEFINED,
            mentions_everyone=False,
            user_mentions=False,
            role_mentions=False,
        )

    async def edit(self, channel: str, message: hikari.Snowflake, text: str) -> None:
        await self.rest.edit_message(
            int(channel), message, text, mentions_everyone=False, user_mentions=False, role_mentions=False
        )

    async def edit_original(self, application: str, token: str, text: str) -> hikari.Message:
        """The interaction's response message (Discord makes it when it has our deferred answer)."""
        for attempt in range(ORIGINAL_TRIES - 1):
            try:
                return await self._edit_original(application, token, text)
            except hikari.NotFoundError:
                await asyncio.sleep(FIRST_WAIT * 2**attempt)
        return await self._edit_original(application, token, text)

    async def _edit_original(self, application: str, token: str, text: str) -> hikari.Message:
        return await self.rest.edit_interaction_response(
            int(application), token, text, mentions_everyone=False, user_mentions=False, role_mentions=False
        )

    async def open_thread(self, channel: str, message: hikari.Snowflake, name: str) -> str:
        """A public thread started from ``message``; returns its channel id."""
        thread = await self.rest.create_message_thread(int(channel), message, name)
        return str(thread.id)

    async def new_thread(self, channel: str, name: str) -> str:
        """A public thread in ``channel``, from no message; returns its channel id."""
        thread = await self.rest.create_thread(int(channel), hikari.ChannelType.GUILD_PUBLIC_THREAD, name)
        return str(thread.id)
