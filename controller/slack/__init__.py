"""Slack front-end: each Slack thread gets its own sandbox.

``install(runtime)`` adds the Events API route (``slack_mode=http``) or a Socket
Mode connection (``slack_mode=socket``) plus the service that drains running
turns on shutdown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from controller.slack.app import build_app, build_client
from controller.slack.bot import SlackBot
from controller.slack.config import HttpEvents, SlackConfig
from controller.slack.oauth import oauth_router
from controller.slack.route import events_router
from controller.slack.service import SlackService

if TYPE_CHECKING:
    from controller.runtime import Runtime


def install(runtime: Runtime) -> SlackService:
    config = SlackConfig.from_settings(runtime.settings)
    client = build_client(config)
    api_host = urlsplit(config.api_url or "").hostname
    bot = SlackBot(runtime, config, client, frozenset({api_host} if api_host else ()))
    app = build_app(config, bot, runtime.store)
    service = SlackService(app, bot, config.transport)
    if isinstance(config.transport, HttpEvents):
        runtime.chat_routers.append(events_router(app, config.transport.signing_secret, runtime.metrics))
    if app.oauth_flow is not None:
        runtime.chat_routers.append(oauth_router(app))
    runtime.services.append((service.start, service.stop))
    return service
