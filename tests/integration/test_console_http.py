"""The console's page and assets, fetched over real HTTP from the real app."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
# Ways to turn a string into markup; the console must build every node as text instead.
MARKUP_SINKS = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(")


@pytest.fixture
def client(api: Any) -> httpx.Client:
    client: httpx.Client = api()
    return client


def _assets(html: str) -> set[str]:
    return set(re.findall(r'(?:src|href)="(/console/[^"]+)"', html))


def test_root_serves_the_console(client: httpx.Client) -> None:
    resp = client.get("/")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert "<title>threadbox</title>" in resp.text
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "object-src 'none'" in csp
    assert _assets(resp.text) >= {"/console/console.js", "/console/console.css", "/console/favicon.svg"}


def test_every_linked_asset_loads(client: httpx.Client) -> None:
    for path in _assets(client.get("/").text):
        resp = client.get(path)
        assert resp.status_code == 200, path
        suffix = path[path.rindex(".") :]
        assert resp.headers["content-type"].startswith(ASSET_TYPES[suffix]), path
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.content, path


def test_console_script_builds_no_markup_from_strings(client: httpx.Client) -> None:
    script = client.get("/console/console.js").text
    assert "async function* ndjson(" in script
    assert [sink for sink in MARKUP_SINKS if sink in script] == []


@pytest.mark.parametrize("path", ["/console/nope.js", "/console/..%2f__init__.py", "/console/index.html"])
def test_unknown_assets_are_404_with_detail(client: httpx.Client, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 404
    assert "detail" in resp.json()


def test_api_routes_are_not_shadowed(client: httpx.Client) -> None:
    assert client.get("/threads").json() == []
    assert client.get("/healthz").json() == {"status": "ok"}
