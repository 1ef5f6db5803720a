"""Wiring Telegram into the runtime, and the service run with the app.

``install(runtime)`` builds python-telegram-bot's ``Bot`` against the configured Bot API
server (``base_url``/``base_file_url``: Telegram's, a local ``telegram-bot-api``, or the
stand-in in devkit/fake_telegram.py). The service asks getMe once at start (the bot's
id and username decide which messages mention it); in polling mode it then runs the
getUpdates loop. Stopping ends the loop and drains running turns.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from telegram import Bot

from controller.tasks import TaskSet, stopping
from controller.telegram.bot import TelegramBot
from controller.telegram.inbound import Me
from controller.telegram.route import webhook_router

if TYPE_CHECKING:
    from controller.runtime import Runtime

log = logging.getLogger(__name__)

POLL_SECONDS = 25  # getUpdates' long-poll timeout
RETRY_SECONDS = 5.0  # after a failed getUpdates


def build_bot(api_url: str, token: str) -> Bot:
    api = api_url.rstrip("/")
    return Bot(token, base_url=f"{api}/bot", base_file_url=f"{api}/file/bot")


class TelegramService:
    def __init__(self, runtime: Runtime) -> None:
        s = runtime.settings
        if s.telegram_token is None:  # Settings refuses a mode without it
            raise ValueError("Telegram needs THREADBOX_TELEGRAM_TOKEN")
        self.rt = runtime
        self.mode = s.telegram_mode
        self.bot = build_bot(s.telegram_api_url, s.telegram_token.get_secret_value())
        self.front: TelegramBot | None = None
        self._loop = TaskSet("Telegram polling")

    async def start(self) -> None:
        await self.bot.initialize()  # getMe
        me = Me(self.bot.id, self.bot.username)
        self.front = TelegramBot(self.rt, self.bot, me, self.rt.settings.telegram_update_interval)
        if self.mode == "polling":
            self._loop.spawn(self._poll(self.front))

    async def stop(self) -> None:
        await self._loop.drain(0)
        if self.front is not None:
            await self.front.drain()
        await self.bot.shutdown()

    async def receive(self, update: dict[str, Any]) -> None:
        if self.front is None:
            raise RuntimeError("Telegram is not started")
        await self.front.receive(update)

    async def _poll(self, front: TelegramBot) -> None:
        offset: int | None = None
        while not stopping():
            try:
                offset = await self._poll_once(front, offset)
            except Exception:
                # Telegram unreachable, or the store (claims): the updates not taken come again.
                log.exception("polling Telegram failed; asking again in %gs", RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)

    async def _poll_once(self, front: TelegramBot, offset: int | None) -> int | None:
        """Take the next updates; the offset past the last one taken."""
        updates = await self.bot.get_updates(offset, timeout=POLL_SECONDS, allowed_updates=["message"])
        for update in updates:
            await front.receive(update.to_dict())
            offset = update.update_id + 1
        return offset


def install(runtime: Runtime) -> TelegramService:
    service = TelegramService(runtime)
    secret = runtime.settings.telegram_webhook_secret
    if runtime.settings.telegram_mode == "webhook" and secret is not None:
        runtime.chat_routers.append(webhook_router(service, secret.get_secret_value(), runtime.metrics))
    runtime.services.append((service.start, service.stop))
    return service
