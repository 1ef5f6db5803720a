"""What threadbox reads from a Discord interaction: pure functions over its JSON.

Only the application commands threadbox registers become turns: ``/run`` and ``/ask`` with
their text, and ``/fork``, ``/forget`` and ``/upgrade`` (the chat commands,
controller/chat/commands.py), which take none. The interaction's channel says where the conversation is: a thread continues
the thread's sandbox; a text channel gets a new thread; a DM is one conversation by itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from controller.identity import ThreadKey

PING, APPLICATION_COMMAND = 1, 2
PONG, DEFERRED_CHANNEL_MESSAGE = 1, 5
THREAD_TYPES = {10, 11, 12}  # announcement, public and private threads
DM_TYPES = {1, 3}
STRING, ATTACHMENT = 3, 11
COMMANDS: dict[str, str] = {"run": "code", "ask": "question"}  # command -> its text option
CommandName = Literal["run", "ask", "fork", "forget", "upgrade"]
NAMES: dict[object, CommandName] = {name: name for name in get_args(CommandName)}
ECHO_LIMIT = 1500  # of the command's text shown on its response message (Discord: 2000)
THREAD_NAME_LIMIT = 100


class NotAnInteraction(ValueError):
    """The JSON is not an interaction threadbox can take; the message says what is wrong."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    size: int
    url: str
    content_type: str


@dataclass(frozen=True)
class Command:
    id: str
    token: str
    application_id: str
    name: CommandName
    text: str
    user: str
    guild: str | None
    channel: str
    channel_type: int
    parent: str | None  # the channel a thread is in
    attachments: list[Attachment] = field(default_factory=list)

    @property
    def in_thread(self) -> bool:
        return self.channel_type in THREAD_TYPES

    @property
    def needs_thread(self) -> bool:
        """In a guild's channel the command opens a thread; in a thread or a DM it continues."""
        return self.guild is not None and not self.in_thread and self.channel_type not in DM_TYPES

    @property
    def acts_on_thread(self) -> bool:
        """``/fork``, ``/forget``, ``/upgrade``: about the conversation it is in, so it opens none."""
        return self.name not in COMMANDS

    @property
    def claim(self) -> str:
        return f"discord-interaction/{self.id}"

    def key(self, thread_channel: str) -> ThreadKey:
        """The sandbox of the conversation in ``thread_channel`` (the thread, or the DM)."""
        parent = self.channel if self.needs_thread else (self.parent or self.channel)
        return ThreadKey("discord", self.guild or "@me", parent, thread_channel)


def kind(payload: dict[str, Any]) -> int:
    value = payload.get("type")
    if not isinstance(value, int):
        raise NotAnInteraction("The interaction has no integer `type`.")
    return value


def parse_command(payload: dict[str, Any]) -> Command | None:
    """The command, or None for a command threadbox does not know; raises NotAnInteraction
    for JSON without the fields every application command has."""
    data, channel = payload.get("data"), payload.get("channel") or {}
    if not isinstance(data, dict) or not isinstance(channel, dict):
        raise NotAnInteraction("An application command needs `data` and `channel` objects.")
    name = NAMES.get(data.get("name"))
    if name is None:
        return None
    options = {str(o.get("name")): o for o in data.get("options") or [] if isinstance(o, dict)}
    try:
        return Command(
            id=str(payload["id"]),
            token=str(payload["token"]),
            application_id=str(payload["application_id"]),
            name=name,
            text=str(options.get(COMMANDS.get(name, ""), {}).get("value") or "").strip(),
            user=_user(payload),
            guild=str(payload["guild_id"]) if payload.get("guild_id") else None,
            channel=str(payload["channel_id"]),
            channel_type=int(channel.get("type", 0)),
            parent=str(channel["parent_id"]) if channel.get("parent_id") else None,
            attachments=_attachments(data, options),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise NotAnInteraction(f"The command lacks a field it needs: {exc}.") from exc


def _user(payload: dict[str, Any]) -> str:
    """In a guild the user is inside ``member``; in a DM it is ``user``."""
    user = (payload.get("member") or {}).get("user") or payload.get("user") or {}
    return str(user["id"])


def _attachments(data: dict[str, Any], options: dict[str, dict[str, Any]]) -> list[Attachment]:
    resolved = (data.get("resolved") or {}).get("attachments") or {}
    found = []
    for option in options.values():
        if option.get("type") == ATTACHMENT and str(option.get("value")) in resolved:
            raw = resolved[str(option["value"])]
            found.append(
                Attachment(
                    filename=str(raw["filename"]),
                    size=int(raw.get("size") or 0),
                    url=str(raw["url"]),
                    content_type=str(raw.get("content_type") or ""),
                )
            )
    return found


def turn_text(command: Command) -> str:
    """``/run`` code goes to the direct agent, which runs fenced blocks; ``/fork``,
    ``/forget`` and ``/upgrade`` are said as the chat commands are."""
    if command.acts_on_thread:
        return f"/{command.name}"
    if command.name == "run" and "```" not in command.text:
        return f"```python\n{command.text}\n```"
    return command.text


def echo(command: Command) -> str:
    """The response message: who asked what (it heads the thread opened from it)."""
    said = f"**/{command.name}** from <@{command.user}>"
    if command.acts_on_thread:
        return said
    text = command.text if len(command.text) <= ECHO_LIMIT else command.text[:ECHO_LIMIT] + "…"
    shown = f"```python\n{text}\n```" if command.name == "run" else f"> {text}"
    return f"{said}\n{shown}"


def thread_name(command: Command) -> str:
    first = next((line.strip() for line in command.text.splitlines() if line.strip()), "")
    return first[:THREAD_NAME_LIMIT] or f"/{command.name}"
