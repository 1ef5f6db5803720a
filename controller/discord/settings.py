"""The THREADBOX_DISCORD_* settings; ``Settings`` inherits them (a mixin, so that this module
loads without hikari, which loads only when Discord is on). Discord is on when any of the
three credentials is set, and then needs all three."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings


class DiscordSettings(BaseSettings):
    discord_application_id: str | None = Field(default=None, description="The Discord application's id.")
    discord_public_key: str | None = Field(
        default=None, description="Its public key (hex): interactions are verified with it (Ed25519)."
    )
    discord_token: SecretStr | None = Field(default=None, description="The application's bot token.")
    discord_api_url: str = Field(
        default="https://discord.com/api/v10", description="Discord REST base URL (tests point it at a fake)."
    )
    discord_update_interval: float = Field(
        default=1.0, gt=0, description="Seconds between edits of a streamed reply (Discord: ~5 per 5 s)."
    )

    @property
    def discord_enabled(self) -> bool:
        given = (self.discord_application_id, self.discord_public_key, self.discord_token)
        return any(value is not None for value in given)

    @model_validator(mode="after")
    def _check_discord(self) -> DiscordSettings:
        given = {
            "APPLICATION_ID": self.discord_application_id,
            "PUBLIC_KEY": self.discord_public_key,
            "TOKEN": self.discord_token,
        }
        missing = [f"THREADBOX_DISCORD_{name}" for name, value in given.items() if not value]
        if self.discord_enabled and missing:
            raise ValueError(f"Discord needs {', '.join(missing)} as well")
        if self.discord_public_key and not _is_key(self.discord_public_key):
            raise ValueError(
                "THREADBOX_DISCORD_PUBLIC_KEY: 64 hex digits, as the application's page shows it"
            )
        return self


def _is_key(value: str) -> bool:
    try:
        return len(bytes.fromhex(value)) == 32
    except ValueError:
        return False
