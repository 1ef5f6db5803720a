"""A controller that a test can stop and start again over the same store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from controller.runtime import build_runtime
from devkit.ports import free_port
from tests.support.fake_openai import FakeOpenAI
from tests.support.server import serve_runtime


@contextmanager
def chat_controller(make_settings: Any, **settings: Any) -> Iterator[httpx.Client]:
    """A controller with ``settings`` on the test's data dir (``make_settings``), so each one
    started anew reads the same local store; yields a client of its chat port."""
    full = make_settings(port=free_port(), chat_port=free_port(), **settings)
    with (
        serve_runtime(build_runtime(full)) as (_, chat_url),
        httpx.Client(base_url=chat_url, timeout=30) as chat,
    ):
        yield chat


def llm_settings(llm: FakeOpenAI) -> dict[str, Any]:
    """Settings that answer with the built-in agent against the fake LLM."""
    return {"agent": "builtin", "llm_base_url": llm.base_url, "llm_api_key": "test"}
