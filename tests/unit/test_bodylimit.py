"""The per-route body limits derived from the settings."""

from __future__ import annotations

import json

import pytest

from controller.bodylimit import (
    DEFAULT_LIMIT,
    JSON_ESCAPE_FACTOR,
    JSON_MARGIN,
    MULTIPART_MARGIN,
    limit_for,
    route_limits,
)
from controller.config import Settings


@pytest.fixture
def settings() -> Settings:
    return Settings(max_code_bytes=1000, max_file_bytes=5000)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/threads", JSON_ESCAPE_FACTOR * 1000 + JSON_MARGIN),
        ("POST", "/threads/api-1/execute", JSON_ESCAPE_FACTOR * 1000 + JSON_MARGIN),
        ("POST", "/threads/api-1/messages", JSON_ESCAPE_FACTOR * 1000 + JSON_MARGIN),
        ("POST", "/threads/api-1/files", 5000 + MULTIPART_MARGIN),
        ("POST", "/slack/events", DEFAULT_LIMIT),
        ("POST", "/threads/api-1/files/x", DEFAULT_LIMIT),
        ("POST", "/threads/a/b/execute", DEFAULT_LIMIT),
        ("GET", "/threads/api-1/files", DEFAULT_LIMIT),
        ("DELETE", "/threads/api-1", DEFAULT_LIMIT),
    ],
)
def test_each_route_gets_its_limit(settings: Settings, method: str, path: str, expected: int) -> None:
    assert limit_for(route_limits(settings), method, path) == expected


def test_no_file_size_limit_leaves_uploads_unbounded() -> None:
    limits = route_limits(Settings(max_file_bytes=0))
    assert limit_for(limits, "POST", "/threads/t/files") is None


@pytest.mark.parametrize("char", ["\x00", "\U0001f600", "\u00e9", '"'])
def test_code_at_its_limit_fits_however_json_escapes_it(settings: Settings, char: str) -> None:
    code = char * (settings.max_code_bytes // len(char.encode()))
    body = json.dumps({"code": code, "timeout": 3600.0}, ensure_ascii=True).encode()
    assert len(code.encode()) <= settings.max_code_bytes
    assert len(body) <= limit_for(route_limits(settings), "POST", "/threads/t/execute")  # type: ignore[operator]
