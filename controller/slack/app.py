"""The Bolt AsyncApp: a Web API client for the workspace and thin listeners (messages, the
Messages tab, a reply's Stop and feedback buttons) that ack and hand off."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from controller.slack.agent_view import home_opened
from controller.slack.blocks import ACTION_FEEDBACK, ACTION_STOP
from controller.slack.bot import SlackBot
from controller.slack.config import BotToken, HttpEvents, SlackConfig
from controller.slack.oauth import oauth_flow
from controller.stores.base import ThreadStore

RATE_LIMIT_RETRIES = 3


def build_client(config: SlackConfig) -> AsyncWebClient:
    return AsyncWebClient(
        token=config.auth.token if isinstance(config.auth, BotToken) else None,  # OAuth: per event
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(),
            AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
        ],
        base_url=config.api_url or AsyncWebClient.BASE_URL,
    )


def build_app(config: SlackConfig, bot: SlackBot, store: ThreadStore) -> AsyncApp:
    http = config.transport if isinstance(config.transport, HttpEvents) else None
    oauth = (
        None
        if isinstance(config.auth, BotToken)
        else oauth_flow(config.auth, store, bot.client, config.api_url)
    )
    app = AsyncApp(
        client=bot.client,
        signing_secret=http.signing_secret if http else None,
        # Socket Mode requests come over an authenticated websocket and carry no signature.
        request_verification_enabled=http is not None,
        oauth_flow=oauth,  # Bolt then authorizes each event with its workspace's stored token
    )
    if oauth is not None:
        app.enable_token_revocation_listeners()  # an uninstalled workspace's token leaves the store

    @app.event("app_mention")
    async def on_mention(body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext) -> None:
        await bot.receive(body, event, context.bot_user_id, True, context.client)

    @app.event("message")
    async def on_message(body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext) -> None:
        await bot.receive(body, event, context.bot_user_id, False, context.client)

    @app.event("app_home_opened")
    async def on_home(event: dict[str, Any], context: AsyncBoltContext) -> None:
        await home_opened(event, context.client)

    # Button presses: ack first (Slack's 3 seconds), then act.
    @app.action(ACTION_STOP)
    async def on_stop(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        await bot.actions.stop(body, context.client)

    @app.action(ACTION_FEEDBACK)
    async def on_feedback(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        await bot.actions.feedback(body)

    return app
