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
        self.socket: AsyncSocketModeHandler | None = None
        if settings.slack_mode == "socket":
            assert settings.slack_app_token is not None
            self.socket = AsyncSocketModeHandler(app, settings.slack_app_token.get_secret_value())

    async def start(self) -> None:
        if self.socket is not None:
            await self.socket.connect_async()  # type: ignore[no-untyped-call]

    async def stop(self) -> None:
        if self.socket is not None:
            await self.socket.close_async()  # type: ignore[no-untyped-call]
        await self.bot.drain()
