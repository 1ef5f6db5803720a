"""What the Discord front-end needs from Settings, typed: no optional credential left to
assert on (``DiscordSettings`` already refused a partial set)."""

from __future__ import annotations

from dataclasses import dataclass

from controller.config import Settings

UPLOAD_LIMIT = 10 * 2**20  # a bot's files per message in a guild without boosts


@dataclass(frozen=True)
class DiscordConfig:
    application_id: str
    public_key: str
    token: str
    api_url: str
    update_interval: float
    max_file_bytes: int

    @classmethod
    def from_settings(cls, s: Settings) -> DiscordConfig:
        if not (s.discord_application_id and s.discord_public_key and s.discord_token):
            raise ValueError("Discord is off: THREADBOX_DISCORD_APPLICATION_ID and the rest are unset.")
        return cls(
            application_id=s.discord_application_id,
            public_key=s.discord_public_key,
            token=s.discord_token.get_secret_value(),
            api_url=s.discord_api_url.rstrip("/"),
            update_interval=s.discord_update_interval,
            max_file_bytes=s.max_file_bytes,
        )
