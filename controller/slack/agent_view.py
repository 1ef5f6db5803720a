"""The agent surface: what a user sees on opening the bot's Messages tab (``agent_view``).

``app_home_opened`` with ``tab == "messages"`` replaces ``assistant_thread_started`` for
apps with the agent messaging experience; the suggested prompts, set without a
``thread_ts``, pin to the top of the conversation and show what the sandbox can do.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

TITLE = "Each thread gets its own Python sandbox. Try:"
PROMPTS = [
    {"title": "Analyse a CSV", "message": "Attach a CSV and ask: what are the totals by month? Plot them."},
    {"title": "Plot a function", "message": "Plot sin(x) and cos(x) from 0 to 2π and save it as waves.png."},
    {"title": "Run Python", "message": "```import sys\nprint(sys.version)```"},
    {"title": "What is installed?", "message": "Which Python packages can I use in this sandbox?"},
]


async def home_opened(event: dict[str, Any], client: AsyncWebClient) -> None:
    channel = event.get("channel")
    if event.get("tab") != "messages" or not channel:
        return
    try:
        await client.assistant_threads_setSuggestedPrompts(
            channel_id=str(channel), title=TITLE, prompts=PROMPTS
        )
    except SlackClientError as exc:
        log.warning("could not set the suggested prompts: %s", exc)
