"""Shared fixtures: real kernels from the lean sandbox env, real HTTP servers."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import zmq

from controller.config import Settings
from controller.runtime import build_runtime
from controller.sandbox_env import ensure_sandbox_python
from devkit.client import ADMIN_TOKEN, bearer
from devkit.ports import free_port
from tests.support.client import RuntimeClient
from tests.support.server import serve_runtime


@pytest.fixture(scope="session")
def sandbox_python() -> Path:
    return ensure_sandbox_python()


@pytest.fixture
def make_settings(tmp_path: Path, sandbox_python: Path) -> Any:
    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "sandbox_python": sandbox_python,
            "backend": "local",
            "store": "local",
            "exec_timeout": 30,
        }
        base.update(overrides)
        return Settings(**base)

    return make


@pytest.fixture
def api(make_settings: Any) -> Iterator[Any]:
    """Start the real API and chat apps on free ports: ``api(**settings) -> httpx.Client``.

    The client carries the bootstrap admin token ``ADMIN_TOKEN``; ``client.chat`` is a
    client of the chat port (``/slack/events``), ``client.runtime`` the shared Runtime.
    """
    stack: list[Any] = []

    def start(**overrides: Any) -> RuntimeClient:
        base = {"port": free_port(), "chat_port": free_port(), "admin_token": ADMIN_TOKEN}
        runtime = build_runtime(make_settings(**(base | overrides)))
        ctx = serve_runtime(runtime)
        url, chat_url = ctx.__enter__()
        timeout = httpx.Timeout(10, read=120)
        client = RuntimeClient(runtime, base_url=url, timeout=timeout, headers=bearer(ADMIN_TOKEN))
        client.chat = httpx.Client(base_url=chat_url, timeout=timeout)  # type: ignore[attr-defined]
        stack.append((ctx, client))
        return client

    yield start
    for ctx, client in reversed(stack):
        client.close()
        client.chat.close()
        ctx.__exit__(None, None, None)


@pytest.fixture(scope="session")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real MinIO server for the whole session; tests use their own bucket via ``minio.store()``."""
    from devkit.minio import MinioUnavailable, running_minio

    try:
        with running_minio(tmp_path_factory.mktemp("minio") / "data") as server:
            yield server
    except MinioUnavailable as exc:
        pytest.skip(str(exc))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Close any ZeroMQ socket a failed test left open, without lingering.

    A context whose sockets are still open blocks forever in ``term()`` when the garbage
    collector finalises it, and pytest collects at exit: one kernel client left open by a
    test that timed out kept a whole CI run from ending."""
    for obj in gc.get_objects():
        if isinstance(obj, zmq.Socket) and not obj.closed:
            obj.close(linger=0)
