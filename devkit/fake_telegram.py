"""A local stand-in for the Telegram Bot API that speaks its wire format and keeps state.

python-telegram-bot talks to it through ``Bot(base_url=..., base_file_url=...)``: methods
are ``POST /bot<token>/<method>`` with a JSON, form or multipart body, answered
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": ..., "description": ...}``,
and files are served at ``/file/bot<token>/<file_path>`` after ``getFile``. Messages are
kept per chat (one id sequence per chat, as Telegram numbers them) with their reply and
topic links, so a test asks what landed in a thread; photos and documents the bot sends
keep their bytes. ``sendMessageDraft`` answers only for private chats (positive ids),
as Telegram does, and ``refuse_drafts`` makes it unknown, as an older Bot API server.
``createForumTopic`` opens a topic in a chat of ``forums``.
``getUpdates`` long-polls the updates queued with ``queue``. Every call is recorded.

The user's side: ``user_says`` makes the update a user's message would be (and keeps the
message in its chat); ``devkit/telegram_updates.py`` delivers it to the webhook.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from devkit.threadserve import StandInHandler, poll, serving

T = TypeVar("T")

BOT_ID = 7000001
TOKEN = f"{BOT_ID}:AAH-fake-telegram-token"
USERNAME = "threadbox_test_bot"
USER_ID = 4242
INT_FIELDS = {"chat_id", "message_id", "message_thread_id", "draft_id", "offset", "limit", "timeout"}
JSON_FIELDS = {"reply_parameters", "allowed_updates", "entities", "caption_entities"}
MAX_POLL_SECONDS = 30.0


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    status: int = 200


@dataclass
class Upload:
    """A photo or document the bot sent."""

    kind: str
    filename: str
    content: bytes


class ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


class FakeTelegram:
    def __init__(self) -> None:
        self.url = ""  # set by serve(): the API root, without a trailing "/"
        self.calls: list[Call] = []
        self.messages: list[dict[str, Any]] = []
        self.uploads: dict[tuple[int, int], Upload] = {}  # (chat, message id) -> what the bot sent
        self.drafts: list[dict[str, Any]] = []
        self.forums: set[int] = set()
        self.drafts_refused = False
        self._files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, bytes)
        self._updates: list[dict[str, Any]] = []
        self._inject: dict[str, list[ApiError]] = {}
        self._ids: dict[int, Iterator[int]] = {}
        self._update_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._cond = threading.Condition(threading.RLock())

    # -- test controls -------------------------------------------------------------

    def refuse_drafts(self) -> None:
        """sendMessageDraft is unknown from now on (404), as on a Bot API server before 9.3."""
        self.drafts_refused = True

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        error = ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)
        with self._cond:
            self._inject.setdefault(method, []).extend([error] * times)

    def add_file(self, name: str, content: bytes, mime_type: str = "text/csv") -> dict[str, Any]:
        """A file a user attached: the ``document`` of their message."""
        file_id = self._store_file("documents", name, content)
        return {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_name": name,
            "mime_type": mime_type,
            "file_size": len(content),
        }

    def queue(self, update: dict[str, Any]) -> None:
        """An update for getUpdates (polling)."""
        with self._cond:
            self._updates.append(update)
            self._cond.notify_all()

    def user_says(
        self,
        chat_id: int,
        text: str = "",
        *,
        code: str | None = None,
        mention: bool = False,
        command: str | None = None,
        reply_to: int | None = None,
        topic: int | None = None,
        document: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The update of a user's message, as Telegram's clients make it: a mention, a command
        and a code block (``pre``) become entities. The message is kept in its chat."""
        builder = _Text()
        if command:
            builder.add(f"/{command}", "bot_command")
        if mention:
            builder.add(f"@{USERNAME}", "mention")
        builder.add(text)
        if code is not None:
            builder.add(code, "pre", language="python")
        with self._cond:
            message = self._message(chat_id, USER_ID, reply_to, topic)
            message |= {"caption" if document else "text": builder.text}
            if builder.entities:
                message["caption_entities" if document else "entities"] = builder.entities
            if document:
                message["document"] = document
            self.messages.append(message)
            return {"update_id": next(self._update_ids), "message": message}

    # -- queries -------------------------------------------------------------------

    def calls_of(self, method: str) -> list[Call]:
        with self._cond:
            return [c for c in self.calls if c.method == method]

    def root(self, message: dict[str, Any]) -> int:
        """The first message of ``message``'s reply chain (a topic counts as its own root)."""
        by_id = {(m["chat"]["id"], m["message_id"]): m for m in self.messages}
        while (replied := message.get("reply_to_message")) and (
            message["chat"]["id"],
            replied["message_id"],
        ) in by_id:
            message = by_id[(message["chat"]["id"], replied["message_id"])]
        return int(message["message_id"])

    def bot_messages(
        self, chat_id: int, root: int | None = None, topic: int | None = None
    ) -> list[dict[str, Any]]:
        """What the bot posted in the chat's reply chain from ``root``, or in forum ``topic``."""
        with self._cond:
            return [
                dict(m)
                for m in self.messages
                if m["chat"]["id"] == chat_id
                and m["from"]["is_bot"]
                and (m.get("message_thread_id") == topic if topic is not None else self.root(m) == root)
            ]

    def text_in(self, chat_id: int, root: int | None = None, topic: int | None = None) -> str:
        return "\n".join(m.get("text", "") for m in self.bot_messages(chat_id, root, topic))

    def files_in(self, chat_id: int, root: int | None = None, topic: int | None = None) -> list[Upload]:
        return [
            self.uploads[(chat_id, m["message_id"])]
            for m in self.bot_messages(chat_id, root, topic)
            if (chat_id, m["message_id"]) in self.uploads
        ]

    def wait_for(self, check: Callable[[], T | None], timeout: float = 60, what: str = "condition") -> T:
        """Poll ``check`` until it returns something truthy (turns run after the webhook's answer)."""
        return poll(check, timeout, what, self.summary)

    def summary(self) -> list[str]:
        with self._cond:
            return [f"{c.method}:{c.status}" for c in self.calls]

    # -- the Bot API -----------------------------------------------------------------

    def handle(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if method == "getUpdates":  # long-polls: must not hold the lock while it waits
            return self._answer(method, params, lambda: self.api_getUpdates(params))
        with self._cond:
            return self._answer(method, params, lambda: self._dispatch(method, params))

    def _answer(
        self, method: str, params: dict[str, Any], run: Callable[[], Any]
    ) -> tuple[int, dict[str, Any]]:
        call = Call(method, params)
        with self._cond:
            self.calls.append(call)
            queued = self._inject.get(method)
            injected = queued.pop(0) if queued else None
        try:
            if injected:
                raise injected
            result = run()
        except ApiError as exc:
            call.status = exc.code
            return exc.code, exc.body()
        return 200, {"ok": True, "result": result}

    def _dispatch(self, method: str, params: dict[str, Any]) -> Any:
        handler = getattr(self, f"api_{method}", None)
        if handler is None or (method == "sendMessageDraft" and self.drafts_refused):
            raise ApiError(404, "Not Found")
        return handler(params)

    def api_getMe(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"id": BOT_ID, "is_bot": True, "first_name": "threadbox", "username": USERNAME}

    def api_sendMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._bot_message(p) | {"text": _text(p)}
        self.messages.append(message)
        return message

    def api_createForumTopic(self, p: dict[str, Any]) -> dict[str, Any]:
        """A topic's id is its service message's (``forum_topic_created``), as Telegram numbers them."""
        chat_id, name = int(p["chat_id"]), str(p.get("name") or "")
        if chat_id not in self.forums:
            raise ApiError(400, "Bad Request: the chat is not a forum")
        if not 1 <= len(name) <= 128:
            raise ApiError(400, "Bad Request: invalid forum topic name specified")
        topic = {"name": name, "icon_color": int(p.get("icon_color") or 7322096)}
        created = self._message(chat_id, BOT_ID, None, None)
        created |= {"message_thread_id": created["message_id"], "is_topic_message": True}
        self.messages.append(created | {"forum_topic_created": topic})
        return {"message_thread_id": created["message_id"], **topic}

    def api_editMessageText(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._find(int(p["chat_id"]), int(p["message_id"]))
        if message.get("text") == p["text"]:
            raise ApiError(400, "Bad Request: message is not modified")
        message["text"] = _text(p)
        message["edit_date"] = int(time.time())
        return message

    def api_sendMessageDraft(self, p: dict[str, Any]) -> bool:
        if int(p["chat_id"]) <= 0:
            raise ApiError(400, "Bad Request: drafts can be sent to private chats only")
        if not int(p.get("draft_id") or 0):
            raise ApiError(400, "Bad Request: draft_id must be non-zero")
        self.drafts.append(
            {"chat_id": int(p["chat_id"]), "draft_id": int(p["draft_id"]), "text": p.get("text", "")}
        )
        return True

    def api_sendPhoto(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._send_file(p, "photo")

    def api_sendDocument(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._send_file(p, "document")

    def api_getFile(self, p: dict[str, Any]) -> dict[str, Any]:
        found = self._files.get(str(p.get("file_id")))
        if found is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        path, content = found
        return {
            "file_id": p["file_id"],
            "file_unique_id": f"u{p['file_id']}",
            "file_size": len(content),
            "file_path": path,
        }

    def api_getUpdates(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        offset, wait = int(p.get("offset") or 0), min(float(p.get("timeout") or 0), MAX_POLL_SECONDS)
        with self._cond:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]  # confirmed ones go
            self._cond.wait_for(lambda: bool(self._updates), wait)
            return list(self._updates[: int(p.get("limit") or 100)])

    def api_deleteWebhook(self, p: dict[str, Any]) -> bool:
        return True

    def api_setWebhook(self, p: dict[str, Any]) -> bool:
        return True

    def download(self, path: str) -> bytes | None:
        with self._cond:
            return next((content for p, content in self._files.values() if p == path), None)

    # -- state -----------------------------------------------------------------------

    def _store_file(self, folder: str, name: str, content: bytes) -> str:
        with self._cond:
            n = next(self._file_ids)
            file_id = f"BQAC{n:06d}"
            self._files[file_id] = (f"{folder}/file_{n}.{name.rsplit('.', 1)[-1]}", content)
            return file_id

    def _message(self, chat_id: int, sender: int, reply_to: int | None, topic: int | None) -> dict[str, Any]:
        ids = self._ids.setdefault(chat_id, itertools.count(1))
        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}
        if chat_id in self.forums:
            chat["is_forum"] = True
        sender_info = {
            "id": sender,
            "is_bot": sender == BOT_ID,
            "first_name": "threadbox" if sender == BOT_ID else "Alice",
        }
        message: dict[str, Any] = {
            "message_id": next(ids),
            "date": int(time.time()),
            "chat": chat,
            "from": sender_info,
        }
        if topic is not None:
            message |= {"message_thread_id": topic, "is_topic_message": True}
        if reply_to is not None:
            message["reply_to_message"] = dict(self._find(chat_id, reply_to))
            message["reply_to_message"].pop("reply_to_message", None)  # Telegram nests one level only
        return message

    def _bot_message(self, p: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(p["chat_id"])
        reply = p.get("reply_parameters") or {}
        replied = int(reply.get("message_id") or p.get("reply_to_message_id") or 0)
        exists = any(m["chat"]["id"] == chat_id and m["message_id"] == replied for m in self.messages)
        if replied and not exists and not reply.get("allow_sending_without_reply"):
            raise ApiError(400, "Bad Request: message to be replied not found")
        return self._message(chat_id, BOT_ID, replied if exists else None, p.get("message_thread_id"))

    def _send_file(self, p: dict[str, Any], kind: str) -> dict[str, Any]:
        upload = p.get(kind)
        if not isinstance(upload, Upload):
            raise ApiError(400, f"Bad Request: there is no {kind} in the request")
        message = self._bot_message(p)
        file_id = self._store_file(f"{kind}s", upload.filename, upload.content)
        if kind == "photo":
            message["photo"] = [
                {
                    "file_id": file_id,
                    "file_unique_id": f"u{file_id}",
                    "width": 640,
                    "height": 480,
                    "file_size": len(upload.content),
                }
            ]
        else:
            message["document"] = {
                "file_id": file_id,
                "file_unique_id": f"u{file_id}",
                "file_name": upload.filename,
                "file_size": len(upload.content),
            }
        self.messages.append(message)
        self.uploads[(message["chat"]["id"], message["message_id"])] = Upload(
            kind, upload.filename, upload.content
        )
        return message

    def _find(self, chat_id: int, message_id: int) -> dict[str, Any]:
        for message in self.messages:
            if message["chat"]["id"] == chat_id and message["message_id"] == message_id:
                return message
        raise ApiError(400, "Bad Request: message to edit not found")


def _text(p: dict[str, Any]) -> str:
    text = str(p.get("text") or "")
    if not text.strip() or len(text) > 4096:
        raise ApiError(
            400,
            "Bad Request: message text is empty" if not text.strip() else "Bad Request: message is too long",
        )
    return text


class _Text:
    """A message's text built piece by piece, with entities in UTF-16 code units."""

    def __init__(self) -> None:
        self.text = ""
        self.entities: list[dict[str, Any]] = []

    def add(self, piece: str, kind: str | None = None, **extra: Any) -> None:
        if not piece:
            return
        if self.text:
            self.text += "\n" if kind == "pre" else " "
        offset = len(self.text.encode("utf-16-le")) // 2
        self.text += piece
        if kind:
            length = len(piece.encode("utf-16-le")) // 2
            self.entities.append({"type": kind, "offset": offset, "length": length, **extra})


def _coerce(params: dict[str, Any]) -> dict[str, Any]:
    """Form values are strings; the Bot API reads numbers and JSON-serialized objects from them."""
    out = dict(params)
    for key, value in params.items():
        if isinstance(value, str) and key in INT_FIELDS:
            out[key] = int(value)
        elif isinstance(value, str) and key in JSON_FIELDS:
            out[key] = json.loads(value)
    return out


def _params(content_type: str, raw: bytes) -> dict[str, Any]:
    if content_type.startswith("application/json"):
        return dict(json.loads(raw or b"{}"))
    if content_type.startswith("multipart/form-data"):
        return _multipart(content_type, raw)
    return dict(parse_qsl(raw.decode(), keep_blank_values=True))


def _multipart(content_type: str, raw: bytes) -> dict[str, Any]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    params: dict[str, Any] = {}
    for part in parsed.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)  # a form's parts are leaves
        filename = part.get_filename()
        params[str(name)] = Upload("", filename, payload) if filename else payload.decode()
    # A file attached by reference: {"photo": "attach://<part>"} names the part holding it.
    for key, value in list(params.items()):
        if isinstance(value, str) and value.startswith("attach://"):
            params[key] = params.pop(value.removeprefix("attach://"))
    return params


def _make_handler(fake: FakeTelegram) -> type[BaseHTTPRequestHandler]:
    class Handler(StandInHandler):
        def _json(self, status: int, body: dict[str, Any]) -> None:
            self._reply(status, "application/json", json.dumps(body).encode())

        def do_GET(self) -> None:
            prefix = f"/file/bot{TOKEN}/"
            path = unquote(urlsplit(self.path).path)  # python-telegram-bot quotes the token's ":"
            content = fake.download(path.removeprefix(prefix)) if path.startswith(prefix) else None
            if content is None:
                self._json(404, ApiError(404, "Not Found").body())
            else:
                self._reply(200, "application/octet-stream", content)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            token, _, method = urlsplit(self.path).path.removeprefix("/bot").partition("/")
            if token != TOKEN:
                self._json(401, ApiError(401, "Unauthorized").body())
                return
            try:
                params = _coerce(_params(self.headers.get("Content-Type", ""), raw))
            except ValueError:
                self._json(400, ApiError(400, "Bad Request: can't parse the request").body())
                return
            self._json(*fake.handle(method, params))

    return Handler


@contextmanager
def serve_fake_telegram(host: str = "127.0.0.1") -> Iterator[FakeTelegram]:
    fake = FakeTelegram()
    with serving(_make_handler(fake), host) as url:
        fake.url = url
        yield fake
