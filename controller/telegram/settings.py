"""The THREADBOX_TELEGRAM_* settings; ``Settings`` inherits them (a mixin, so that this module
loads without python-telegram-bot, which loads only when Telegram is on)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings

# What Telegram accepts as setWebhook's secret_token.
SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class TelegramSettings(BaseSettings):
    telegram_mode: Literal["off", "webhook", "polling"] = Field(
        default="off",
        description="webhook: Telegram posts updates to /telegram/webhook on the chat port; "
        "polling: the controller asks with getUpdates (development, one replica).",
    )
    telegram_token: SecretStr | None = Field(default=None, description="The bot's token from @BotFather.")
    telegram_webhook_secret: SecretStr | None = Field(
        default=None, description="setWebhook's secret_token; every webhook request must carry it."
    )
    telegram_api_url: str = Field(
        default="https://api.telegram.org", description="Bot API server (a local one, or a stand-in)."
    )
    telegram_update_interval: float = Field(
        default=1.0, gt=0, description="Seconds between edits of a streamed reply (Telegram: ~1/s per chat)."
    )

    @model_validator(mode="after")
    def _check_telegram(self) -> TelegramSettings:
        if self.telegram_mode == "off":
            return self
        if self.telegram_token is None:
            raise ValueError(f"telegram_mode={self.telegram_mode} needs THREADBOX_TELEGRAM_TOKEN")
        secret = self.telegram_webhook_secret
        if self.telegram_mode == "webhook" and secret is None:
            raise ValueError("telegram_mode=webhook needs THREADBOX_TELEGRAM_WEBHOOK_SECRET")
        if secret is not None and not SECRET_TOKEN.match(secret.get_secret_value()):
            raise ValueError(
                "THREADBOX_TELEGRAM_WEBHOOK_SECRET: 1 to 256 characters of A-Z, a-z, 0-9, _ and -"
            )
        return self
