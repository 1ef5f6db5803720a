"""Shared fixtures: real kernels from the lean sandbox env, real HTTP servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.api import create_app
from controller.config import Settings
from controller.runtime import build_runtime
from controller.sandbox_env import ensure_sandbox_python
from tests.support.server import serve


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
    """Start the real app on a free port: ``api(**settings) -> httpx.Client``."""
    stack: list[Any] = []

    def start(**overrides: Any) -> httpx.Client:
        runtime = build_runtime(make_settings(**overrides))
        ctx = serve(create_app(runtime))
        url = ctx.__enter__()
        client = httpx.Client(base_url=url, timeout=httpx.Timeout(10, read=120))
        client.runtime = runtime  # type: ignore[attr-defined]
        stack.append((ctx, client))
        return client

    yield start
    for ctx, client in reversed(stack):
        client.close()
        ctx.__exit__(None, None, None)


@pytest.fixture(scope="session")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real MinIO server for the whole session; tests use their own bucket via ``minio.store()``."""
    from tests.support.minio import MinioUnavailable, running_minio

    try:
        with running_minio(tmp_path_factory.mktemp("minio") / "data") as server:
            yield server
    except MinioUnavailable as exc:
        pytest.skip(str(exc))
