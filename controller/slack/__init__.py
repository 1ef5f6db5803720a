"""Slack front-end: each Slack thread gets its own sandbox.

``install(runtime)`` adds the Events API route (``slack_mode=http``) or a Socket
Mode connection (``slack_mode=socket``) plus the service that drains running
turns on shutdown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from controller.slack.app import api_base_url, build_app, build_client
from controller.slack.bot import SlackBot
from controller.slack.route import events_router
from controller.slack.service import SlackService

if TYPE_CHECKING:
    from controller.runtime import Runtime


def install(runtime: Runtime) -> SlackService:
    settings = runtime.settings
    client = build_client(settings)
    api_host = urlsplit(api_base_url(settings) or "").hostname
    bot = SlackBot(runtime, client, frozenset({api_host} if api_host else ()))
    app = build_app(settings, bot)
    service = SlackService(app, bot, settings)
    if settings.slack_mode == "http":
        assert settings.slack_signing_secret is not None
        runtime.chat_routers.append(
            events_router(app, settings.slack_signing_secret.get_secret_value(), runtime.metrics)
        )
    runtime.services.append((service.start, service.stop))
    return service
