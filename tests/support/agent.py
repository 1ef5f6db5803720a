"""Helpers to talk to the agent through the HTTP API, as a chat front-end would."""

from __future__ import annotations

from typing import Any

import httpx

from devkit.client import stream_events


def chat(client: httpx.Client, thread_id: str, text: str) -> list[dict[str, Any]]:
    """Send a message and return every event of the reply's NDJSON stream."""
    with client.stream("POST", f"/threads/{thread_id}/messages", json={"text": text}) as resp:
        resp.raise_for_status()
        return stream_events(resp.iter_lines())


def upload(client: httpx.Client, thread_id: str, name: str, data: bytes) -> None:
    resp = client.post(f"/threads/{thread_id}/files", files={"file": (name, data)})
    resp.raise_for_status()


def messages(events: list[dict[str, Any]]) -> list[str]:
    return [e["text"] for e in events if e["type"] == "message"]


def done(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The turn's Done, checking it is the last event and the only one."""
    assert [e["type"] for e in events].count("done") == 1, events
    assert events[-1]["type"] == "done", events
    return events[-1]
