"""The application commands threadbox answers, registered with Discord once per application.

``threadbox discord register-commands`` overwrites the application's global commands with
these (``PUT /applications/{id}/commands``); Discord then shows them in every guild the bot is
in, and in DMs with it. The option names are what ``interactions.py`` reads; ``/fork``,
``/forget`` and ``/upgrade`` (the chat commands) take none.
"""

from __future__ import annotations

import hikari

from controller.discord.config import DiscordConfig
from controller.discord.interactions import COMMANDS

DESCRIPTIONS = {
    "run": ("Run Python in this thread's sandbox", "The code to run"),
    "ask": ("Ask the assistant; it runs code in this thread's sandbox", "Your question"),
}
THREAD_COMMANDS = {
    "fork": "Copy this thread (its files and variables) into a new thread",
    "forget": "Forget this thread's kept variables; its files stay",
    "upgrade": "Move this thread to its profile's current version; files and variables stay",
}
FILE_OPTION = "file"


def builders(rest: hikari.api.RESTClient) -> list[hikari.api.SlashCommandBuilder]:
    made = []
    for name, (about, text_about) in DESCRIPTIONS.items():
        text = hikari.CommandOption(
            type=hikari.OptionType.STRING, name=COMMANDS[name], description=text_about, is_required=True
        )
        file = hikari.CommandOption(
            type=hikari.OptionType.ATTACHMENT, name=FILE_OPTION, description="A file for the sandbox"
        )
        made.append(rest.slash_command_builder(name, about).add_option(text).add_option(file))
    return made + [rest.slash_command_builder(name, about) for name, about in THREAD_COMMANDS.items()]


async def register(config: DiscordConfig) -> list[str]:
    """Overwrite the application's global commands with threadbox's; returns their names."""
    app = hikari.RESTApp(url=config.api_url)
    await app.start()
    try:
        async with app.acquire(config.token, hikari.TokenType.BOT) as rest:
            commands = await rest.set_application_commands(int(config.application_id), builders(rest))
    finally:
        await app.close()
    return [c.name for c in commands]
