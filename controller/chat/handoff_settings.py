"""The operator handoff settings (README "Handing a thread to a person"); ``Settings`` inherits
them. Each front-end names its own operator destination; without one, it has no handoff."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode


class HandoffSettings(BaseSettings):
    handoff_timeout: float = Field(
        default=3600.0,
        ge=0,
        description="Seconds a handed-off thread waits for its operator before the assistant is back (0: never).",
    )
    handoff_keywords: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated words or phrases that hand a user's thread to a person.",
    )
    slack_operator_channel: str | None = Field(
        default=None, description="Slack channel id where handed-off threads go; unset: no handoff."
    )
    telegram_operator_chat: int | None = Field(
        default=None, description="Telegram chat id where handed-off threads go; unset: no handoff."
    )

    @field_validator("handoff_keywords", mode="before")
    @classmethod
    def _split_keywords(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value
