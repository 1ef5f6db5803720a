"""The Bolt AsyncApp: a Web API client for the workspace and two thin listeners."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from controller.config import Settings
from controller.slack.bot import SlackBot

RATE_LIMIT_RETRIES = 3


def api_base_url(settings: Settings) -> str | None:
    """The configured API URL with the trailing "/" slack_sdk's urljoin needs to keep its path."""
    url = settings.slack_api_url
    return url if url is None or url.endswith("/") else url + "/"


def build_client(settings: Settings) -> AsyncWebClient:
    assert settings.slack_bot_token is not None
    base = api_base_url(settings)
    return AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(),
            AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
        ],
        base_url=base or AsyncWebClient.BASE_URL,
    )


def build_app(settings: Settings, bot: SlackBot) -> AsyncApp:
    secret = settings.slack_signing_secret
    app = AsyncApp(
        client=bot.client,
        signing_secret=secret.get_secret_value() if secret else None,
        # Socket Mode requests come over an authenticated websocket and carry no signature.
        request_verification_enabled=settings.slack_mode == "http",
    )

    @app.event("app_mention")
    async def on_mention(body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext) -> None:
        await bot.receive(body, event, context.bot_user_id, is_mention_event=True)

    @app.event("message")
    async def on_message(body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext) -> None:
        await bot.receive(body, event, context.bot_user_id, is_mention_event=False)

    return app
