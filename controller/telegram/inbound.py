"""Which Telegram updates threadbox answers, and what a handled message is.

Pure functions over the update as the Bot API sends it (JSON); where a message belongs
(a topic, a reply chain) is decided with the store in ``threads.py``. Telegram's clients
turn Markdown fences into ``pre`` entities, so the text is rebuilt with its code fenced
again: agents read code blocks that way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# In private chats /start is the first thing a user sends; both begin a new thread.
NEW_COMMANDS = ("/new", "/start")


@dataclass(frozen=True)
class Me:
    """The bot, from getMe."""

    id: int
    username: str


@dataclass(frozen=True)
class FileRef:
    file_id: str
    name: str
    size: int


@dataclass(frozen=True)
class TgMessage:
    update_id: int
    chat_id: int
    private: bool
    message_id: int
    topic: int | None  # the forum topic (message_thread_id) of a topic message
    reply_to: int | None  # the message this one answers, outside topics
    user: str
    text: str
    mentioned: bool
    new: bool  # /new: a new thread
    files: list[FileRef] = field(default_factory=list)

    @property
    def addressed(self) -> bool:
        return self.mentioned or self.new


def parse(update: dict[str, Any], me: Me) -> TgMessage | None:
    """The message as threadbox sees it, or None for updates it never answers (edits,
    channel posts, service messages, other bots)."""
    message, sender = update.get("message") or {}, (update.get("message") or {}).get("from") or {}
    chat = message.get("chat") or {}
    if not (sender.get("id") and chat.get("id") and message.get("message_id")) or sender.get("is_bot"):
        return None
    raw = str(message.get("text") or message.get("caption") or "")
    entities = list(message.get("entities") or message.get("caption_entities") or [])
    text, mentioned, new = rebuild(raw, entities, me)
    files = _files(message)
    if not (text or files or new):
        return None
    topic = message.get("message_thread_id") if message.get("is_topic_message") else None
    replied = (message.get("reply_to_message") or {}).get("message_id")
    return TgMessage(
        update_id=int(update["update_id"]),
        chat_id=int(chat["id"]),
        private=chat.get("type") == "private",
        message_id=int(message["message_id"]),
        topic=int(topic) if topic else None,
        reply_to=int(replied) if replied and not topic else None,
        user=str(sender["id"]),
        text=text,
        mentioned=mentioned,
        new=new,
        files=files,
    )


def rebuild(text: str, entities: list[dict[str, Any]], me: Me) -> tuple[str, bool, bool]:
    """(text with code fenced, the bot's mention and /new dropped and a command to it without
    its @bot, mentioned, /new)."""
    units = text.encode("utf-16-le")  # entity offsets count UTF-16 code units
    out: list[str] = []
    pos, mentioned, new = 0, False, False
    for entity in sorted(entities, key=lambda e: int(e.get("offset", 0))):
        start, end = 2 * int(entity["offset"]), 2 * (int(entity["offset"]) + int(entity["length"]))
        if start < pos:
            continue  # nested in the one before (bold inside pre...)
        piece = units[start:end].decode("utf-16-le", "replace")
        kind = entity.get("type")
        if _mentions(kind, piece, entity, me):
            mentioned, piece = True, ""
        elif kind == "bot_command" and start == 0 and (name := _command(piece, me)):
            new = name in NEW_COMMANDS
            piece = "" if new else name  # "/fork@thisbot" is "/fork", as commands are matched
        elif kind == "pre":
            piece = f"```{entity.get('language') or ''}\n{piece}\n```"
        elif kind == "code":
            piece = f"`{piece}`"
        out += [units[pos:start].decode("utf-16-le", "replace"), piece]
        pos = end
    out.append(units[pos:].decode("utf-16-le", "replace"))
    return "".join(out).strip(), mentioned, new


def _mentions(kind: object, piece: str, entity: dict[str, Any], me: Me) -> bool:
    if kind == "mention":
        return piece.lower() == f"@{me.username}".lower()
    return kind == "text_mention" and (entity.get("user") or {}).get("id") == me.id


def _command(piece: str, me: Me) -> str:
    """``/new`` and ``/new@thisbot`` are ours; ``/new@otherbot`` is not."""
    name, _, to = piece.lower().partition("@")
    return name if not to or to == me.username.lower() else ""


def _files(message: dict[str, Any]) -> list[FileRef]:
    files = []
    if document := message.get("document"):
        name = document.get("file_name") or f"file-{message['message_id']}"
        files.append(FileRef(document["file_id"], name, int(document.get("file_size") or 0)))
    if photos := message.get("photo"):
        largest = photos[-1]  # Telegram lists the sizes smallest first
        name = f"photo-{message['message_id']}.jpg"
        files.append(FileRef(largest["file_id"], name, int(largest.get("file_size") or 0)))
    return files
