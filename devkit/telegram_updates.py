"""Deliver Telegram updates to the real app's webhook, as Telegram does: a JSON Update with
the ``secret_token`` of setWebhook in ``X-Telegram-Bot-Api-Secret-Token``."""

from __future__ import annotations

from typing import Any

import httpx

from devkit.fake_telegram import TOKEN, FakeTelegram

WEBHOOK_SECRET = "test-telegram-webhook-secret"
WEBHOOK_PATH = "/telegram/webhook"


def telegram_settings(fake: FakeTelegram, **overrides: Any) -> dict[str, Any]:
    """Settings overrides that point threadbox's Telegram front-end at the stand-in."""
    return {
        "telegram_mode": "webhook",
        "telegram_token": TOKEN,
        "telegram_webhook_secret": WEBHOOK_SECRET,
        "telegram_api_url": fake.url,
        "telegram_update_interval": 0.3,
        **overrides,
    }


class TelegramSender:
    """``chat`` is a client of the chat port (the ``api`` fixture's ``client.chat``)."""

    def __init__(self, client: httpx.Client, secret: str | None = WEBHOOK_SECRET) -> None:
        self.client = client
        self.chat: httpx.Client = client.chat  # type: ignore[attr-defined]
        self.secret = secret

    def deliver(self, update: dict[str, Any], secret: str | None = None) -> httpx.Response:
        token = secret or self.secret
        headers = {"X-Telegram-Bot-Api-Secret-Token": token} if token else {}
        return self.chat.post(WEBHOOK_PATH, json=update, headers=headers)

    def post_raw(self, raw: bytes) -> httpx.Response:
        headers = {"X-Telegram-Bot-Api-Secret-Token": self.secret or "", "Content-Type": "application/json"}
        return self.chat.post(WEBHOOK_PATH, content=raw, headers=headers)
