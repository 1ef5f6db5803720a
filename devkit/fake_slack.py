"""A local fake of the Slack Web API that speaks the wire format and keeps state.

The real slack_sdk/slack_bolt clients talk to it through ``base_url``. It stores
messages and files per channel and thread, records every call, serves
``url_private_download`` files (or Slack's HTML login page when the token is
wrong, as real Slack does), and can inject errors or 429s for the next calls
of a method. Streamed messages (``chat.startStream`` returns the ``ts`` that
``appendStream``/``stopStream`` take) keep their chunks in order; ``refuse_streaming``
makes all three answer an error, as a workspace without streaming does. Tests read outcomes through helpers and poll with ``wait_for``; a load
registers ``watch`` callbacks instead, which every posted or edited message calls.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from devkit.fake_slack_oauth import FakeOAuth, Workspace, auth_test
from devkit.threadserve import StandInHandler, poll, serving

T = TypeVar("T")

BOT_TOKEN = "xoxb-fake-bot-token"
TEAM_ID = "T0FAKE"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
STREAM_METHODS = ("chat.startStream", "chat.appendStream", "chat.stopStream")
LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to Slack</body></html>"


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    status: int = 200


@dataclass
class Injected:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeFile:
    id: str
    name: str
    title: str = ""
    content: bytes = b""
    mimetype: str = "application/octet-stream"
    channel: str | None = None
    thread_ts: str | None = None

    def info(self, base: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "title": self.title or self.name,
            "mimetype": self.mimetype,
            "size": len(self.content),
            "url_private": f"{base}files-pri/{self.id}/{self.name}",
            "url_private_download": f"{base}files-pri/{self.id}/download/{self.name}",
        }


class FakeSlack:
    def __init__(self) -> None:
        self.url = ""  # set by serve(); always ends with "/"
        self.calls: list[Call] = []
        self.messages: list[dict[str, Any]] = []
        self.files: dict[str, FakeFile] = {}
        self.reactions: list[dict[str, Any]] = []
        self.ephemeral: list[dict[str, Any]] = []
        self.streaming_refused: str | None = None
        self.streams_end_at_once = False
        self.login_page_always = False
        self.oauth = FakeOAuth(Workspace(TEAM_ID, "Fake", BOT_TOKEN, BOT_USER_ID, BOT_ID))
        self._inject: dict[str, list[Injected]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._watchers: list[Callable[[dict[str, Any]], None]] = []

    # -- test controls -------------------------------------------------------------

    def fail(self, method: str, error: str = "internal_error", times: int = 1, status: int = 200) -> None:
        """The next ``times`` calls of ``method`` answer ``{"ok": false, "error": error}``."""
        self._queue(method, [Injected(status, {"ok": False, "error": error})] * times)

    def refuse_streaming(self, error: str = "not_allowed") -> None:
        """Every streaming call answers ``error`` from now on (``missing_scope``, ``not_allowed``...)."""
        self.streaming_refused = error

    def end_streams_at_once(self) -> None:
        """Every stream started from now on is over as soon as it starts, as Slack ends one that
        ran too long: whichever call comes next, ``appendStream`` or ``stopStream``, answers
        ``message_not_in_streaming_state``."""
        self.streams_end_at_once = True

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        body = {"ok": False, "error": "ratelimited"}
        self._queue(method, [Injected(429, body, {"Retry-After": str(retry_after)})] * times)

    def _queue(self, method: str, items: list[Injected]) -> None:
        with self._lock:
            self._inject.setdefault(method, []).extend(items)

    def add_download(self, name: str, content: bytes, mimetype: str = "text/csv") -> dict[str, Any]:
        """A file a user attached; returns the ``files[]`` entry of the message event."""
        with self._lock:
            file = FakeFile(id=f"F{next(self._ids):08d}", name=name, content=content, mimetype=mimetype)
            self.files[file.id] = file
        return file.info(self.url)

    def watch(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback`` with a copy of each message as it is posted or edited, in the order the
        fake applied them (under its lock, so the callback must be quick)."""
        with self._lock:
            self._watchers.append(callback)

    def _changed(self, message: dict[str, Any]) -> None:
        for callback in self._watchers:
            callback(dict(message))

    # -- queries -------------------------------------------------------------------

    def calls_of(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def messages_in_thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(m)
                for m in self.messages
                if m["channel"] == channel and thread_ts in (m.get("thread_ts"), m["ts"])
            ]

    def text_in_thread(self, channel: str, thread_ts: str) -> str:
        """What a reader sees: message text, a stream's Markdown and its task cards."""
        return "\n".join(visible(m) for m in self.messages_in_thread(channel, thread_ts))

    def streams_in_thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        return [m for m in self.messages_in_thread(channel, thread_ts) if "stream" in m]

    def files_in_thread(self, channel: str, thread_ts: str) -> list[FakeFile]:
        with self._lock:
            return [f for f in self.files.values() if (f.channel, f.thread_ts) == (channel, thread_ts)]

    def wait_for(self, check: Callable[[], T | None], timeout: float = 60, what: str = "condition") -> T:
        """Poll ``check`` until it returns something truthy (listeners run after the ack)."""
        return poll(check, timeout, what, self.summary)

    def summary(self) -> list[str]:
        with self._lock:
            return [f"{c.method}:{c.status}" for c in self.calls]

    # -- the Web API -----------------------------------------------------------------

    def handle(self, method: str, params: dict[str, Any], headers: dict[str, str]) -> Injected:
        with self._lock:
            call = Call(method, params, headers)
            self.calls.append(call)
            queued = self._inject.get(method)
            if queued:
                result = queued.pop(0)
            elif method == "oauth.v2.access":  # authorized by the app's client id and secret
                result = Injected(200, self.oauth.access(params, headers))
            elif not headers.get("authorization"):
                result = Injected(200, {"ok": False, "error": "not_authed"})
            elif (caller := self.oauth.workspace_of(headers)) is None:
                result = Injected(200, {"ok": False, "error": "invalid_auth"})
            elif method == "auth.test":
                result = Injected(200, auth_test(caller))
            elif method in STREAM_METHODS and self.streaming_refused:
                result = Injected(200, {"ok": False, "error": self.streaming_refused})
            else:
                handler = getattr(self, "api_" + method.replace(".", "_"), None)
                body = handler(params) if handler else {"ok": False, "error": "unknown_method"}
                result = Injected(200, body)
            call.status = result.status
            return result

    def _ts(self) -> str:
        n = next(self._ids)
        return f"{1_700_000_000 + n}.{n:06d}"

    def _message(self, channel: str, ts: str) -> dict[str, Any] | None:
        return next((m for m in self.messages if (m["channel"], m["ts"]) == (channel, ts)), None)

    def api_chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not (p.get("text") or p.get("blocks")):
            return {"ok": False, "error": "no_text"}
        message = {
            "type": "message",
            "channel": p["channel"],
            "ts": self._ts(),
            "text": p.get("text", ""),
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "blocks": _blocks(p),
            "edits": 0,
        }
        if p.get("thread_ts"):
            message["thread_ts"] = p["thread_ts"]
        self.messages.append(message)
        self._changed(message)
        return {"ok": True, "channel": p["channel"], "ts": message["ts"], "message": dict(message)}

    def api_chat_getPermalink(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._message(p.get("channel", ""), p.get("message_ts", ""))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        link = f"https://fake.slack.com/archives/{message['channel']}/p{message['ts'].replace('.', '')}"
        return {"ok": True, "channel": message["channel"], "permalink": link}

    def api_chat_postEphemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        if not (p.get("channel") and p.get("user")):
            return {"ok": False, "error": "invalid_arguments"}
        self.ephemeral.append(dict(p))
        return {"ok": True, "message_ts": self._ts()}

    def api_chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._message(p.get("channel", ""), p.get("ts", ""))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        message["text"] = p.get("text", "")
        message["blocks"] = _blocks(p)
        message["edits"] += 1
        self._changed(message)
        return {"ok": True, "channel": message["channel"], "ts": message["ts"], "text": message["text"]}

    def api_chat_delete(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._message(p.get("channel", ""), p.get("ts", ""))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        self.messages.remove(message)
        return {"ok": True, "channel": message["channel"], "ts": message["ts"]}

    # -- streaming: https://docs.slack.dev/reference/methods/chat.startStream (and append, stop)

    def api_chat_startStream(self, p: dict[str, Any]) -> dict[str, Any]:
        channel, thread_ts = p.get("channel"), p.get("thread_ts")
        if not (channel and thread_ts):
            return {"ok": False, "error": "invalid_arguments"}
        if channel.startswith(("C", "G")) and not (p.get("recipient_user_id") and p.get("recipient_team_id")):
            return {"ok": False, "error": "invalid_arguments"}  # required when streaming to channels
        message = {"type": "message", "channel": channel, "ts": self._ts(), "thread_ts": thread_ts}
        message |= {"text": "", "user": BOT_USER_ID, "bot_id": BOT_ID, "edits": 0, "blocks": []}
        message |= {"stream": "streaming", "chunks": [], "tasks": {}}
        message["display_mode"] = p.get("task_display_mode") or "timeline"
        self.messages.append(message)
        _take_chunks(message, p)
        if self.streams_end_at_once:
            message["stream"] = "ended"
        self._changed(message)
        return {"ok": True, "channel": channel, "ts": message["ts"]}

    def api_chat_appendStream(self, p: dict[str, Any]) -> dict[str, Any]:
        message, error = self._streaming(p)
        if message is None:
            return {"ok": False, "error": error}
        _take_chunks(message, p)
        message["edits"] += 1
        self._changed(message)
        return {"ok": True, "channel": message["channel"], "ts": message["ts"]}

    def api_chat_stopStream(self, p: dict[str, Any]) -> dict[str, Any]:
        message, error = self._streaming(p)
        if message is None:
            return {"ok": False, "error": error}
        _take_chunks(message, p)
        message |= {"stream": "stopped", "blocks": _blocks(p)}
        self._changed(message)
        return {"ok": True, "channel": message["channel"], "ts": message["ts"], "message": dict(message)}

    def _streaming(self, p: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        if not (p.get("channel") and p.get("ts")):
            return None, "invalid_arguments"
        message = self._message(p["channel"], p["ts"])
        if message is None:
            return None, "message_not_found"
        if message.get("stream") != "streaming":
            return None, "message_not_in_streaming_state"
        return message, ""

    def api_conversations_replies(self, p: dict[str, Any]) -> dict[str, Any]:
        found = self.messages_in_thread(p.get("channel", ""), p.get("ts", ""))
        return {"ok": True, "messages": found, "has_more": False}

    def api_files_getUploadURLExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("filename") or not str(p.get("length", "")).isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        file = FakeFile(id=f"F{next(self._ids):08d}", name=p["filename"])
        self.files[file.id] = file
        return {"ok": True, "upload_url": f"{self.url}upload/{file.id}", "file_id": file.id}

    def upload(self, file_id: str, data: bytes) -> bool:
        with self._lock:
            self.calls.append(Call("upload", {"file_id": file_id, "bytes": len(data)}, {}))
            file = self.files.get(file_id)
            if file is None:
                return False
            file.content = data
            return True

    def api_files_completeUploadExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        entries = json.loads(p.get("files", "[]"))
        files = [self.files.get(e.get("id", "")) for e in entries]
        if not entries or None in files:
            return {"ok": False, "error": "file_not_found"}
        channel, thread_ts = p.get("channel_id"), p.get("thread_ts")
        for entry, file in zip(entries, files, strict=True):
            assert file is not None
            file.title, file.channel, file.thread_ts = entry.get("title") or file.name, channel, thread_ts
        if channel:
            share = {"type": "message", "subtype": "file_share", "channel": channel, "ts": self._ts()}
            share.update(thread_ts=thread_ts, text=p.get("initial_comment") or "", edits=0)
            share["files"] = [f.id for f in files if f]
            self.messages.append(share)
        return {"ok": True, "files": [f.info(self.url) for f in files if f]}

    def api_files_info(self, p: dict[str, Any]) -> dict[str, Any]:
        file = self.files.get(p.get("file", ""))
        return {"ok": True, "file": file.info(self.url)} if file else {"ok": False, "error": "file_not_found"}

    def api_reactions_add(self, p: dict[str, Any]) -> dict[str, Any]:
        self.reactions.append(dict(p))
        return {"ok": True}

    def api_assistant_threads_setStatus(self, p: dict[str, Any]) -> dict[str, Any]:
        if not (p.get("channel_id") and p.get("thread_ts")) or "status" not in p:
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True}

    def api_assistant_threads_setSuggestedPrompts(self, p: dict[str, Any]) -> dict[str, Any]:
        prompts = p.get("prompts")
        if not p.get("channel_id") or not isinstance(prompts, list) or not 0 < len(prompts) <= 4:
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True}

    def download(self, path: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
        """``files-pri/<id>/download/<name>``: the file with the right token, else a login page."""
        with self._lock:
            self.calls.append(Call("download", {"path": path}, headers))
            parts = path.split("/")
            file = self.files.get(parts[1]) if len(parts) > 2 else None
            authorized = self.oauth.workspace_of(headers) is not None
            if file is None:
                return 404, "text/plain", b"not found"
            if self.login_page_always or not authorized:
                return 200, "text/html; charset=utf-8", LOGIN_PAGE
            return 200, file.mimetype, file.content


def _blocks(p: dict[str, Any]) -> list[dict[str, Any]]:
    raw = p.get("blocks") or []
    return list(json.loads(raw) if isinstance(raw, str) else raw)


def _take_chunks(message: dict[str, Any], p: dict[str, Any]) -> None:
    """A stream's content: ``markdown_text`` is shorthand for one markdown chunk; a task_update
    with a known id updates that card in place, as Slack's timeline does."""
    chunks = list(p.get("chunks") or [])
    if p.get("markdown_text"):
        chunks.insert(0, {"type": "markdown_text", "text": p["markdown_text"]})
    for chunk in chunks:
        if chunk.get("type") == "task_update":
            task = message["tasks"].setdefault(chunk["id"], {})
            if not task:
                message["chunks"].append({"type": "task", "id": chunk["id"]})
            task.update({k: v for k, v in chunk.items() if k != "type"})
        else:
            message["chunks"].append(chunk)


def visible(message: dict[str, Any]) -> str:
    parts = [message.get("text") or ""]
    for chunk in message.get("chunks", []):
        if chunk["type"] == "task":
            task = message["tasks"][chunk["id"]]
            parts += [task.get("title", ""), task.get("details", ""), task.get("output", "")]
        else:
            parts.append(chunk.get("text", ""))
    parts += [b.get("text", "") for b in message.get("blocks", []) if isinstance(b.get("text"), str)]
    return "\n".join(p for p in parts if p)


def _params(handler: BaseHTTPRequestHandler, raw: bytes) -> dict[str, Any]:
    params: dict[str, Any] = dict(parse_qsl(urlsplit(handler.path).query))
    ctype = handler.headers.get("Content-Type", "")
    if ctype.startswith("application/json") and raw:
        params.update(json.loads(raw))
    elif raw:
        params.update(parse_qsl(raw.decode(), keep_blank_values=True))
    return params


def _make_handler(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(StandInHandler):
        def _headers(self) -> dict[str, str]:
            return {k.lower(): v for k, v in self.headers.items()}

        def do_GET(self) -> None:
            path = urlsplit(self.path).path.lstrip("/")
            if path.startswith("files-pri/"):
                status, ctype, body = fake.download(path, self._headers())
                self._reply(status, ctype, body)
            elif path == "oauth/v2/authorize":
                self._authorize()
            elif "." in path and "/" not in path:  # a Web API method called with GET (chat.getPermalink)
                self._api(path, b"")
            else:
                self._reply(404, "text/plain", b"not found")

        def _authorize(self) -> None:
            status, where = fake.oauth.authorize(dict(parse_qsl(urlsplit(self.path).query)))
            if status == 302:
                self._reply(status, "text/plain", b"", {"Location": where})
            else:
                self._reply(status, "text/plain", where.encode())

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = urlsplit(self.path).path.lstrip("/")
            if path.startswith("upload/"):
                ok = fake.upload(path.split("/", 1)[1], raw)
                self._reply(200 if ok else 404, "text/plain", f"OK - {len(raw)}".encode())
                return
            self._api(path, raw)

        def _api(self, method: str, raw: bytes) -> None:
            result = fake.handle(method, _params(self, raw), self._headers())
            self._reply(result.status, "application/json", json.dumps(result.body).encode(), result.headers)

    return Handler


@contextmanager
def serve_fake_slack(host: str = "127.0.0.1") -> Iterator[FakeSlack]:
    """``host``: the address to bind, e.g. the node IP so an in-cluster controller reaches it."""
    fake = FakeSlack()
    with serving(_make_handler(fake), host) as url:
        fake.url = url + "/"
        yield fake
