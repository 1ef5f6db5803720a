"""Request bodies bounded per route, before they reach memory or disk (pure ASGI).

A body whose ``Content-Length`` is over its route's limit is answered 413 before a
byte of it is read. A body without a length (chunked) is counted as it streams,
and the request is cut with a 413 the moment the count passes the limit: the app
gets an error from ``receive`` and never sees more. So a JSON body is never
buffered past its limit, and a multipart upload never spools more than its limit
to disk (starlette closes, and so deletes, the spooled files when parsing fails).

Limits come from the settings: code-carrying JSON routes allow ``max_code_bytes``
of code however it is escaped, the upload route ``max_file_bytes`` plus multipart
overhead, and every other route, chat webhooks included, ``DEFAULT_LIMIT``.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.config import Settings

DEFAULT_LIMIT = 1 << 20
# JSON may escape one byte of code as six (\u00XX), and the other fields are short.
JSON_ESCAPE_FACTOR = 6
JSON_MARGIN = 4096
# Part headers, the boundary lines and the short `name` field around an uploaded file.
MULTIPART_MARGIN = 64 * 1024


@dataclass(frozen=True)
class Limit:
    method: str
    path: re.Pattern[str]
    bytes: int | None  # None: unlimited (a quota of 0)


def route_limits(settings: Settings) -> tuple[Limit, ...]:
    code = JSON_ESCAPE_FACTOR * settings.max_code_bytes + JSON_MARGIN
    upload = settings.max_file_bytes + MULTIPART_MARGIN if settings.max_file_bytes else None
    return (
        Limit("POST", re.compile(r"/threads"), code),
        Limit("POST", re.compile(r"/threads/[^/]+/(execute|messages)"), code),
        Limit("POST", re.compile(r"/threads/[^/]+/files"), upload),
    )


def limit_for(limits: tuple[Limit, ...], method: str, path: str) -> int | None:
    for limit in limits:
        if limit.method == method and limit.path.fullmatch(path):
            return limit.bytes
    return DEFAULT_LIMIT


def install(app: Starlette, settings: Settings) -> None:
    """Bound every request body of ``app`` by the limits of ``settings``."""
    app.add_middleware(BodyLimit, limits=route_limits(settings))


class BodyTooLarge(Exception):
    """Raised from ``receive`` once a streamed body passes its limit."""


class BodyLimit:
    def __init__(self, app: ASGIApp, limits: tuple[Limit, ...]) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(self.limits, scope["method"], scope["path"])
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return
        guard = _Guard(receive, send, limit)
        with contextlib.suppress(BodyTooLarge):  # the app let the error through: answered below
            await self.app(scope, guard.receive, guard.send)
        if guard.tripped and not guard.started:
            await _refuse(send, limit)


class _Guard:
    """Counts the body as the app receives it; once over, the app's own answer (an error
    about a broken body) is dropped in favour of the 413."""

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive = receive
        self._send = send
        self.limit = limit
        self.seen = 0
        self.tripped = False
        self.started = False

    async def receive(self) -> Message:
        if self.tripped:
            raise BodyTooLarge()
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                self.tripped = True
                raise BodyTooLarge()
        return message

    async def send(self, message: Message) -> None:
        if self.tripped:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length" and value.isdigit():
            return int(value)
    return None


async def _refuse(send: Send, limit: int) -> None:
    detail = f"The request body is over this route's limit of {limit} bytes ({limit / 2**20:.1f} MiB); none of it was used."
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
