"""Clients of a running controller's API, as its bootstrap admin."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import httpx

# The bootstrap admin token (THREADBOX_ADMIN_TOKEN) of every controller devkit and the test
# fixtures start; a dev value, never a deployment's.
ADMIN_TOKEN = "tbx_test-admin-token-for-the-api-fixture"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stream_events(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The events of an NDJSON turn stream, without the keepalives that only hold it open."""
    events = (json.loads(line) for line in lines if line)
    return [e for e in events if e["type"] != "keepalive"]


def api_client(url: str) -> httpx.Client:
    """An admin client of the controller at ``url``, patient enough for long turns."""
    return httpx.Client(base_url=url, headers=bearer(ADMIN_TOKEN), timeout=httpx.Timeout(10, read=300))
