"""A local stand-in for Discord's REST API (v10) that speaks its wire format and keeps state.

The real hikari REST client talks to it through ``RESTApp(url=...)``. It covers what the
Discord front-end calls: channel messages (JSON, or multipart ``payload_json`` plus
``files[n]`` parts), message edits, threads started from a message or in a channel, the
interaction webhook (``@original`` edits and follow-ups) and the bulk overwrite of global
commands. It records every call, keeps messages per channel (a thread is a channel),
serves attachment URLs as Discord's CDN does, refuses a file over the upload limit with
Discord's 413, and answers 429 with ``retry_after`` in the JSON body and the headers when
a test asks for it. Interactions are registered by the sender (``deferred``), which is
what gives their token a webhook.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeVar
from urllib.parse import urlsplit

from devkit.threadserve import StandInHandler, poll, serving

T = TypeVar("T")

API = "/api/v10"
BOT_TOKEN = "fake-discord-bot-token"
APPLICATION_ID = "1100000000000000001"
BOT_USER_ID = "1100000000000000002"
GUILD_ID = "1100000000000000003"
UPLOAD_LIMIT = 10 * 2**20  # per request, for a bot in a guild without boosts
TEXT_CHANNEL, PUBLIC_THREAD = 0, 11
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"/channels/(\d+)/messages"), "create_message"),
    ("PATCH", re.compile(r"/channels/(\d+)/messages/(\d+)"), "edit_message"),
    ("POST", re.compile(r"/channels/(\d+)/messages/(\d+)/threads"), "message_thread"),
    ("POST", re.compile(r"/channels/(\d+)/threads"), "channel_thread"),
    ("PATCH", re.compile(r"/webhooks/(\d+)/([^/]+)/messages/@original"), "edit_original"),
    ("POST", re.compile(r"/webhooks/(\d+)/([^/]+)"), "follow_up"),
    ("PUT", re.compile(r"/applications/(\d+)/commands"), "set_commands"),
]


@dataclass
class Call:
    method: str
    route: str  # e.g. "create_message"
    path: str
    body: dict[str, Any]
    files: dict[str, tuple[str, bytes]]  # form field -> (filename, content)
    headers: dict[str, str]
    status: int = 200


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Served:
    """A file Discord's CDN serves: a user's attachment, or one the bot posted."""

    id: str
    filename: str
    content: bytes
    content_type: str
    channel_id: str = ""


class FakeDiscord:
    def __init__(self) -> None:
        self.url = ""  # set by serve_fake_discord(): the server's root, no trailing "/"
        self.calls: list[Call] = []
        self.messages: list[dict[str, Any]] = []
        self.channels: dict[str, dict[str, Any]] = {}
        self.served: dict[str, Served] = {}
        self.commands: list[dict[str, Any]] = []
        self.interactions: dict[str, dict[str, Any]] = {}  # token -> the interaction
        self._inject: dict[str, list[Reply]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    @property
    def api_url(self) -> str:
        return self.url + API

    # -- test controls -------------------------------------------------------------

    def snowflake(self) -> str:
        with self._lock:
            return str(1_300_000_000_000_000_000 + next(self._ids))

    def text_channel(self) -> dict[str, Any]:
        """A guild text channel, as the ``channel`` of an interaction."""
        return self._channel(TEXT_CHANNEL, None)

    def thread_in(self, parent: str) -> dict[str, Any]:
        """A thread someone already opened in ``parent``, as the ``channel`` of an interaction."""
        return self._channel(PUBLIC_THREAD, parent)

    def rate_limit(self, route: str, times: int = 1, retry_after: float = 1.0) -> None:
        """The next ``times`` calls of ``route`` (a ROUTES name) answer 429, as Discord does."""
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
        headers = {
            "Retry-After": str(int(retry_after) or 1),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": str(retry_after),
            "X-RateLimit-Scope": "shared",
        }
        with self._lock:
            self._inject.setdefault(route, []).extend([Reply(429, body, headers)] * times)

    def refuse(self, route: str, status: int, code: int, message: str, times: int = 1) -> None:
        """The next ``times`` calls of ``route`` answer Discord's error JSON (e.g. 403, 50013
        "Missing Permissions" where the bot may not create threads)."""
        with self._lock:
            self._inject.setdefault(route, []).extend(
                [Reply(status, {"message": message, "code": code})] * times
            )

    def add_attachment(self, filename: str, content: bytes, content_type: str = "text/csv") -> dict[str, Any]:
        """A file a user attaches to a command: its entry in ``data.resolved.attachments``."""
        served = Served(self.snowflake(), filename, content, content_type)
        with self._lock:
            self.served[served.id] = served
        return self._attachment(served) | {"ephemeral": True}

    def deferred(self, interaction: dict[str, Any]) -> None:
        """Discord took a deferred answer (type 5): the "thinking" message is the ``@original``.
        Discord refuses a second answer to one interaction, so a redelivery adds nothing."""
        if str(interaction["token"]) in self.interactions:
            return
        original = self._new_message(str(interaction["channel_id"]), "", [])
        original |= {"interaction_id": interaction["id"], "thinking": True}
        with self._lock:
            self.interactions[str(interaction["token"])] = {**interaction, "original": original["id"]}

    # -- queries -------------------------------------------------------------------

    def calls_of(self, route: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.route == route]

    def messages_in(self, channel_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self.messages if m["channel_id"] == channel_id]

    def text_in(self, channel_id: str) -> str:
        return "\n".join(m["content"] for m in self.messages_in(channel_id))

    def files_in(self, channel_id: str) -> list[Served]:
        with self._lock:
            return [s for s in self.served.values() if s.channel_id == channel_id]

    def threads_of(self, parent: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in self.channels.values() if c.get("parent_id") == parent]

    def wait_for(self, check: Callable[[], T | None], timeout: float = 60, what: str = "condition") -> T:
        """Poll ``check`` until it returns something truthy (turns run after the interaction's answer)."""
        return poll(check, timeout, what, self.summary)

    def summary(self) -> list[str]:
        with self._lock:
            return [f"{c.route}:{c.status}" for c in self.calls]

    # -- the REST API --------------------------------------------------------------------

    def handle(self, method: str, path: str, call: Call) -> Reply:
        for verb, pattern, route in ROUTES:
            match = pattern.fullmatch(path)
            if verb == method and match:
                call.route = route
                return self._answer(route, call, match.groups())
        return Reply(404, {"message": "404: Not Found", "code": 0})

    def _answer(self, route: str, call: Call, args: tuple[str, ...]) -> Reply:
        with self._lock:
            self.calls.append(call)
            queued = self._inject.get(route)
            if queued:
                reply = queued.pop(0)
            elif not route.startswith(("edit_original", "follow_up")) and not _bot(call.headers):
                reply = Reply(401, {"message": "401: Unauthorized", "code": 0})
            elif sum(len(data) for _, data in call.files.values()) > UPLOAD_LIMIT:
                reply = Reply(413, {"message": "Request entity too large", "code": 40005})
            else:
                reply = getattr(self, "api_" + route)(call, *args)
            call.status = reply.status
            return reply

    def api_create_message(self, call: Call, channel_id: str) -> Reply:
        if channel_id not in self.channels:
            return _unknown("Channel", 10003)
        if not (call.body.get("content") or call.files):
            return Reply(400, {"message": "Cannot send an empty message", "code": 50006})
        content = str(call.body.get("content") or "")
        return Reply(200, self._new_message(channel_id, content, self._files(call, channel_id)))

    def api_edit_message(self, call: Call, channel_id: str, message_id: str) -> Reply:
        message = self._message(channel_id, message_id)
        if message is None:
            return _unknown("Message", 10008)
        return Reply(200, self._edit(message, call))

    def api_message_thread(self, call: Call, channel_id: str, message_id: str) -> Reply:
        message = self._message(channel_id, message_id)
        if message is None:
            return _unknown("Message", 10008)
        if message.get("thread_id"):
            return Reply(
                400, {"message": "A thread has already been created for this message", "code": 160004}
            )
        # Discord gives a thread started from a message the message's id.
        thread = self._channel(PUBLIC_THREAD, channel_id, message_id, str(call.body.get("name") or ""))
        message["thread_id"] = thread["id"]
        return Reply(201, thread)

    def api_channel_thread(self, call: Call, channel_id: str) -> Reply:
        if channel_id not in self.channels:
            return _unknown("Channel", 10003)
        kind = int(call.body.get("type") or PUBLIC_THREAD)
        return Reply(201, self._channel(kind, channel_id, None, str(call.body.get("name") or "")))

    def api_edit_original(self, call: Call, app_id: str, token: str) -> Reply:
        interaction = self.interactions.get(token)
        if app_id != APPLICATION_ID or interaction is None:
            return _unknown("Webhook", 10015)
        message = self._message(str(interaction["channel_id"]), interaction["original"])
        assert message is not None
        message["thinking"] = False
        return Reply(200, self._edit(message, call))

    def api_follow_up(self, call: Call, app_id: str, token: str) -> Reply:
        interaction = self.interactions.get(token)
        if app_id != APPLICATION_ID or interaction is None:
            return _unknown("Webhook", 10015)
        channel_id, content = str(interaction["channel_id"]), str(call.body.get("content") or "")
        return Reply(200, self._new_message(channel_id, content, self._files(call, channel_id)))

    def api_set_commands(self, call: Call, app_id: str) -> Reply:
        if app_id != APPLICATION_ID or not isinstance(call.body, list):
            return Reply(400, {"message": "Invalid Form Body", "code": 50035})
        self.commands = [_command(c, self.snowflake()) for c in call.body]
        return Reply(200, self.commands)

    # -- state ---------------------------------------------------------------------------

    def _channel(
        self, kind: int, parent: str | None, channel_id: str | None = None, name: str = "general"
    ) -> dict[str, Any]:
        channel: dict[str, Any] = {"id": channel_id or self.snowflake(), "type": kind, "guild_id": GUILD_ID}
        channel |= {"name": name, "flags": 0, "permission_overwrites": [], "position": 0}
        if kind != TEXT_CHANNEL:
            channel |= {"parent_id": parent, "owner_id": BOT_USER_ID, "member_count": 1, "message_count": 0}
            channel["thread_metadata"] = {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": _now(),
                "locked": False,
            }
        with self._lock:
            self.channels[channel["id"]] = channel
        return dict(channel)

    def _new_message(self, channel_id: str, content: str, files: list[Served]) -> dict[str, Any]:
        message: dict[str, Any] = {"id": self.snowflake(), "channel_id": channel_id, "guild_id": GUILD_ID}
        message |= {"content": content, "timestamp": _now(), "edited_timestamp": None, "edits": 0}
        message |= {"author": _bot_user(), "application_id": APPLICATION_ID, "type": 0, "flags": 0}
        message |= {"tts": False, "mention_everyone": False, "mentions": [], "mention_roles": []}
        message |= {"embeds": [], "pinned": False, "attachments": [self._attachment(f) for f in files]}
        with self._lock:
            self.messages.append(message)
        return _wire(message)

    def _edit(self, message: dict[str, Any], call: Call) -> dict[str, Any]:
        if "content" in call.body:
            message["content"] = str(call.body["content"] or "")
        if call.files:
            message["attachments"] += [self._attachment(f) for f in self._files(call, message["channel_id"])]
        message["edits"] += 1
        message["edited_timestamp"] = _now()
        return _wire(message)

    def _files(self, call: Call, channel_id: str) -> list[Served]:
        kind = "application/octet-stream"
        files = [Served(self.snowflake(), name, data, kind, channel_id) for name, data in call.files.values()]
        for served in files:
            self.served[served.id] = served
        return files

    def _attachment(self, served: Served) -> dict[str, Any]:
        url = f"{self.url}/attachments/{served.channel_id or 0}/{served.id}/{served.filename}"
        return {
            "id": served.id,
            "filename": served.filename,
            "size": len(served.content),
            "url": url,
            "proxy_url": url,
            "content_type": served.content_type,
        }

    def _message(self, channel_id: str, message_id: str) -> dict[str, Any] | None:
        return next(
            (m for m in self.messages if (m["channel_id"], m["id"]) == (channel_id, message_id)), None
        )

    def download(self, path: str) -> Served | None:
        """``attachments/<channel>/<id>/<filename>``, as Discord's CDN serves it."""
        parts = path.split("/")
        with self._lock:
            served = self.served.get(parts[2]) if len(parts) == 4 else None
            self.calls.append(Call("GET", "download", path, {}, {}, {}, 200 if served else 404))
        return served


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _bot(headers: dict[str, str]) -> bool:
    return headers.get("authorization") == f"Bot {BOT_TOKEN}"


def _bot_user() -> dict[str, Any]:
    return {"id": BOT_USER_ID, "username": "threadbox", "discriminator": "0", "avatar": None, "bot": True}


def _unknown(what: str, code: int) -> Reply:
    return Reply(404, {"message": f"Unknown {what}", "code": code})


def _wire(message: dict[str, Any]) -> dict[str, Any]:
    """The message as Discord returns it, without the fake's bookkeeping."""
    return {k: v for k, v in message.items() if k not in ("edits", "thinking", "interaction_id", "thread_id")}


def _command(body: dict[str, Any], command_id: str) -> dict[str, Any]:
    command = {"id": command_id, "application_id": APPLICATION_ID, "version": command_id, "type": 1}
    return command | {"default_member_permissions": None, "nsfw": False, "options": []} | body


def parse_body(content_type: str, raw: bytes) -> tuple[Any, dict[str, tuple[str, bytes]]]:
    """JSON, or multipart with ``payload_json`` and file parts (``files[n]``)."""
    if not content_type.startswith("multipart/form-data"):
        return (json.loads(raw) if raw else {}), {}
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    form = BytesParser(policy=HTTP).parsebytes(head + raw)
    payload: Any = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in form.iter_parts():
        name = str(part.get_param("name", header="content-disposition") or "")
        data = part.get_payload(decode=True)
        assert isinstance(data, bytes)
        if name == "payload_json":
            payload = json.loads(data)
        else:
            files[name] = (part.get_filename() or name, data)
    return payload, files


def _make_handler(fake: FakeDiscord) -> type[BaseHTTPRequestHandler]:
    class Handler(StandInHandler):
        def _body(self, headers: dict[str, str]) -> bytes:
            """aiohttp streams multipart forms chunked, with no Content-Length."""
            if "chunked" not in headers.get("transfer-encoding", ""):
                return self.rfile.read(int(headers.get("content-length") or 0))
            raw = bytearray()
            while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                raw += self.rfile.read(size)
                self.rfile.readline()  # the CRLF after each chunk
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(raw)

        def do_GET(self) -> None:
            served = fake.download(urlsplit(self.path).path.lstrip("/"))
            if served is None:
                self._reply(404, "text/plain", b"not found")
            else:
                self._reply(200, served.content_type, served.content)

        def _api(self) -> None:
            path = urlsplit(self.path).path
            headers = {k.lower(): v for k, v in self.headers.items()}
            raw = self._body(headers)
            if not path.startswith(API):
                self._reply(404, "application/json", b'{"message": "404: Not Found", "code": 0}')
                return
            body, files = parse_body(headers.get("content-type", ""), raw)
            path = path.removeprefix(API)
            reply = fake.handle(self.command, path, Call(self.command, "", path, body, files, headers))
            if reply.status == 204:
                self._reply(204, "application/json", b"")
                return
            self._reply(reply.status, "application/json", json.dumps(reply.body).encode(), reply.headers)

        do_POST = do_PATCH = do_PUT = _api

    return Handler


@contextmanager
def serve_fake_discord(host: str = "127.0.0.1") -> Iterator[FakeDiscord]:
    fake = FakeDiscord()
    with serving(_make_handler(fake), host) as url:
        fake.url = url
        yield fake
