"""``threadbox serve``/``dev``: the API app and the chat app, two servers in one event loop.

They share the Runtime, so they must share its loop. The API app's lifespan starts and
closes the runtime; the chat server starts taking webhooks only once the runtime is
ready, and stops first, so no chat event reaches a runtime that is closing.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

# Loaded with the servers, before the event loop runs: httpx imports httpcore (and trio with it)
# only when its first client is made, 0.43 s that stalled the loop in the first cold start's
# restore (the pod server's client) and would in a first Slack download.
import httpcore  # noqa: F401
import uvicorn
from fastapi import FastAPI

from controller.api import create_app, create_chat_app
from controller.runtime import Runtime


def build_servers(runtime: Runtime, log_level: str = "info") -> tuple[uvicorn.Server, uvicorn.Server]:
    """The API server (port) and the chat server (chat_port), both on the configured host."""
    settings = runtime.settings

    def server(app: FastAPI, port: int, lifespan: Literal["on", "off"]) -> uvicorn.Server:
        # proxy_headers off: the trusted-proxy check needs the real peer address, which uvicorn
        # would otherwise replace with X-Forwarded-For from any local connection.
        # log_config None: uvicorn's loggers go to the root handler (controller/logsetup.py).
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=port,
            log_level=log_level,
            log_config=None,
            lifespan=lifespan,
            proxy_headers=False,
        )
        return uvicorn.Server(config)

    api = server(create_app(runtime), settings.port, "on")
    return api, server(create_chat_app(runtime), settings.chat_port, "off")


class StartFailed(Exception):
    """A server could not start (uvicorn logged why, e.g. a port in use)."""


async def _run(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit as exc:
        # uvicorn exits the process when it cannot start. As an error instead, the other server
        # still stops, and a lifespan that already started the runtime is shut down and closes it.
        if hasattr(server, "lifespan"):  # set once serve() has begun
            await server.lifespan.shutdown()
        raise StartFailed(f"could not serve on {server.config.host}:{server.config.port}") from exc


async def serve_both(api: uvicorn.Server, chat: uvicorn.Server, runtime: Runtime) -> None:
    """Run until either server stops (a signal, ``should_exit`` or a failed start), then stop
    the other; raises StartFailed if one could not start."""
    api_task = asyncio.create_task(_run(api))
    ready = asyncio.create_task(runtime.ready.wait())
    await asyncio.wait({api_task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():  # the API stopped before the runtime was up (a failed start)
        ready.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ready
        await api_task
        return
    chat_task = asyncio.create_task(_run(chat))
    await asyncio.wait({api_task, chat_task}, return_when=asyncio.FIRST_COMPLETED)
    chat.should_exit = True
    try:
        await chat_task
    finally:
        api.should_exit = True
        await api_task
