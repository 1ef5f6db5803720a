"""Helpers to drive the API the way a client would, and read its event streams.

The bootstrap admin token and its header are in devkit.client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from devkit.client import stream_events

if TYPE_CHECKING:
    from controller.runtime import Runtime


class RuntimeClient(httpx.Client):
    """A client of a controller this test process runs, with that controller's ``runtime``
    for tests that look inside it (its store, backend, metrics)."""

    def __init__(self, runtime: Runtime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime


def create_thread(client: httpx.Client, name: str, user: str | None = None) -> str:
    resp = client.post("/threads", json={"name": name, "user": user})
    resp.raise_for_status()
    return str(resp.json()["id"])


def run(client: httpx.Client, thread_id: str, code: str, **body: Any) -> list[dict[str, Any]]:
    """Execute code and return every event of the NDJSON stream."""
    with client.stream("POST", f"/threads/{thread_id}/execute", json={"code": code, **body}) as resp:
        resp.raise_for_status()
        return stream_events(resp.iter_lines())


def stdout(events: list[dict[str, Any]]) -> str:
    """What the code printed; a sandbox or kernel failure fails here, with its error, not later
    as output that is merely missing."""
    failed = [  # a persist failure keeps the output: the store outage tests print through one
        e
        for e in errors(events)
        if e["kind"] in {"sandbox_failed", "kernel_died"} and e["ename"] != "PersistFailed"
    ]
    assert not failed, f"the execution failed: {failed}"
    return "".join(e["text"] for e in events if e["type"] == "stdout")


def ok(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events, after checking the execution ended ``ok``."""
    assert events and events[-1] == {**events[-1], "type": "done", "status": "ok"}, events
    return events


def errors(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "error"]
