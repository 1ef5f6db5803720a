"""HTTP request metrics, labelled by route template (``/threads/{thread_id}``), never by raw
path: a thread id or file name in a label would make one series per thread.

A pure ASGI middleware, outermost, so requests refused before routing (401, 413) are counted
too. The route is matched here rather than read from the router, which never runs for those.
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.metrics import Metrics

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


def route_of(app: FastAPI, scope: Scope) -> str:
    """The template of the route that serves ``scope``, or ``unmatched``."""
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", UNMATCHED))
    return UNMATCHED


class HttpMetrics:
    def __init__(self, app: ASGIApp, fastapi: FastAPI, metrics: Metrics) -> None:
        self.app = app
        self.fastapi = fastapi
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        method = scope["method"] if scope["method"] in METHODS else "other"
        route = route_of(self.fastapi, scope)
        status = 500  # a handler that raised before answering is served a 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.http_requests.labels(method, route, str(status)).inc()
            self.metrics.http_seconds.labels(method, route).observe(time.monotonic() - started)


def install(app: FastAPI, metrics: Metrics) -> None:
    """Call last, after every other middleware, so this one is the outermost."""
    app.add_middleware(HttpMetrics, fastapi=app, metrics=metrics)
