"""The Slack service run with the app: the Socket Mode connection, if any, and draining turns."""

from __future__ import annotations

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp

from controller.config import Settings
from controller.slack.bot import SlackBot


class SlackService:
    def __init__(self, app: AsyncApp, bot: SlackBot, settings: Settings) -> None:
        self.app = app
        self.bot = bot
        self.settings = settings
        self.socket: AsyncSocketModeHandler | None = None

    def socket_handler(self) -> AsyncSocketModeHandler:
        # Built here, not in __init__: its aiohttp session needs the running event loop.
        assert self.settings.slack_app_token is not None
        return AsyncSocketModeHandler(self.app, self.settings.slack_app_token.get_secret_value())

    async def start(self) -> None:
        if self.settings.slack_mode == "socket":
            self.socket = self.socket_handler()
            await self.socket.connect_async()  # type: ignore[no-untyped-call]

    async def stop(self) -> None:
        if self.socket is not None:
            await self.socket.close_async()  # type: ignore[no-untyped-call]
        await self.bot.drain()
