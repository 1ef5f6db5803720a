"""Installing the Discord front-end into a runtime: its route on the chat port, and its
REST client started and its turns drained with the app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller.discord.config import DiscordConfig
from controller.discord.front import DiscordFront
from controller.discord.route import interactions_router
from controller.discord.verify import Verifier

if TYPE_CHECKING:
    from controller.runtime import Runtime


def install(runtime: Runtime) -> DiscordFront:
    config = DiscordConfig.from_settings(runtime.settings)
    front = DiscordFront(runtime, config)
    runtime.chat_routers.append(interactions_router(Verifier(config.public_key), front, runtime.metrics))
    runtime.services.append((front.start, front.stop))
    return front
