"""The Slack service run with the app: the Socket Mode connection, if any, and draining turns."""

from __future__ import annotations

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp

from controller.slack.bot import SlackBot
from controller.slack.config import HttpEvents, SocketMode


class SlackService:
    def __init__(self, app: AsyncApp, bot: SlackBot, transport: HttpEvents | SocketMode) -> None:
        self.app = app
        self.bot = bot
        self.transport = transport
        self.socket: AsyncSocketModeHandler | None = None

    def socket_handler(self, transport: SocketMode) -> AsyncSocketModeHandler:
        # Built when started, not in __init__: its aiohttp session needs the running event loop.
        return AsyncSocketModeHandler(self.app, transport.app_token)

    async def start(self) -> None:
        if isinstance(self.transport, SocketMode):
            self.socket = self.socket_handler(self.transport)
            await self.socket.connect_async()  # type: ignore[no-untyped-call]

    async def stop(self) -> None:
        if self.socket is not None:
            await self.socket.close_async()  # type: ignore[no-untyped-call]
        await self.bot.drain()
