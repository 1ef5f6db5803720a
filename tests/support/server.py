"""Run ASGI apps on real sockets, so tests make real HTTP calls."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from controller.runtime import Runtime
from controller.serving import build_servers, serve_both
from devkit.ports import free_port


@contextmanager
def _running(main: Callable[[], Coroutine[Any, Any, None]], servers: list[uvicorn.Server]) -> Iterator[None]:
    """Run ``main`` in a background thread (own event loop) until every server has started."""
    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    for _ in range(600):
        if all(s.started for s in servers):
            break
        if not thread.is_alive():
            raise RuntimeError("the test server failed to start")
        threading.Event().wait(0.05)
    else:
        raise RuntimeError("the test server did not start within 30s")
    try:
        yield
    finally:
        for server in servers:
            server.should_exit = True
        thread.join(timeout=60)


@contextmanager
def serve(app: Any, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1; yields the base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    with _running(server.serve, [server]):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def serve_runtime(runtime: Runtime) -> Iterator[tuple[str, str]]:
    """The API app and the chat app of ``runtime`` as ``threadbox serve`` runs them (one loop),
    on the host and ports of its settings; yields their base URLs."""
    api, chat = build_servers(runtime, log_level="warning")
    with _running(lambda: serve_both(api, chat, runtime), [api, chat]):
        host = runtime.settings.host
        yield f"http://{host}:{runtime.settings.port}", f"http://{host}:{runtime.settings.chat_port}"
