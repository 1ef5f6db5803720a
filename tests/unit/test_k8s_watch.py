"""ListWatch's list-then-watch, through the real client over real HTTP (see test_k8s_api.py).

The server's script: a first listing fails (500), the next lists p1; the watch from it adds p2,
changes p1, deletes p2, then sends an ERROR (410, the version expired), so the watch lists
again and watches from there until the test closes it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from controller.k8s import watch as listwatch
from controller.k8s.watch import Handlers, ListWatch
from tests.unit.test_k8s_api import PODS, kube_at, send_json, serving

pytestmark = pytest.mark.timeout(30)


def pod(name: str, version: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": str(version)}}


EXPIRED = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"}
WATCH_FROM_FIRST_LISTING = [
    {"type": "ADDED", "object": pod("p2", 2)},
    {"type": "MODIFIED", "object": pod("p1", 3)},
    {"type": "DELETED", "object": pod("p2", 4)},
    {"type": "ERROR", "object": EXPIRED},
]


class ScriptedApiServer(BaseHTTPRequestHandler):
    listings: ClassVar[int] = 0
    watched_from: ClassVar[list[str]] = []
    release: ClassVar[threading.Event] = threading.Event()  # ends a watch held open

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        assert url.path == PODS and query["labelSelector"] == "app=x"
        if query.get("watch", "").lower() != "true":
            ScriptedApiServer.listings += 1
            if self.listings == 1:
                send_json(self, 500, {"kind": "Status", "code": 500, "message": "etcd is away"})
            else:
                send_json(
                    self,
                    200,
                    {
                        "metadata": {"resourceVersion": "1" if self.listings == 2 else "9"},
                        "items": [pod("p1", 1)],
                    },
                )
            return
        self.watched_from.append(query["resourceVersion"])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        if query["resourceVersion"] == "1":
            for event in WATCH_FROM_FIRST_LISTING:
                self.wfile.write(json.dumps(event).encode() + b"\n")
                self.wfile.flush()
            return
        self.release.wait(timeout=20)

    def log_message(self, *_args: Any) -> None:
        pass


class Seen:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.relisted = asyncio.Event()

    def listed(self, pods: list[dict[str, Any]]) -> None:
        self.events.append(("listed", ",".join(p["metadata"]["name"] for p in pods)))
        if len([e for e in self.events if e[0] == "listed"]) == 2:
            self.relisted.set()

    def handlers(self) -> Handlers:
        return Handlers(
            self.listed,
            lambda p: self.events.append(("changed", p["metadata"]["name"])),
            lambda p: self.events.append(("removed", p["metadata"]["name"])),
        )


@pytest.fixture
async def host(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    monkeypatch.setattr(listwatch, "RETRY_SECONDS", 0)  # the back-off is not what is tested
    ScriptedApiServer.listings, ScriptedApiServer.watched_from = 0, []
    ScriptedApiServer.release = threading.Event()
    with serving(ScriptedApiServer) as url:
        try:
            yield url
        finally:
            ScriptedApiServer.release.set()


async def test_it_lists_watches_and_lists_again_after_an_error_event(host: str) -> None:
    seen = Seen()
    async with kube_at(host) as kube:
        watch = ListWatch(kube, "app=x", seen.handlers())
        watch.start("test-pod-watch")
        try:
            await asyncio.wait_for(seen.relisted.wait(), timeout=10)
        finally:
            await watch.close()
    assert seen.events == [
        ("listed", "p1"),
        ("changed", "p2"),
        ("changed", "p1"),
        ("removed", "p2"),
        ("listed", "p1"),
    ]
    assert ScriptedApiServer.listings == 3  # the failed one, then one per watch that began from scratch


async def test_close_ends_its_task_while_it_watches(host: str) -> None:
    seen = Seen()
    async with kube_at(host) as kube:
        watch = ListWatch(kube, "app=x", seen.handlers())
        watch.start("test-pod-watch")
        await asyncio.wait_for(seen.relisted.wait(), timeout=10)
        [task] = asyncio.all_tasks() - {asyncio.current_task()}
        assert task.get_name() == "test-pod-watch" and not task.done()
        await watch.close()
        assert task.cancelled()
        assert asyncio.all_tasks() == {asyncio.current_task()}
