"""Threads are reached by id or by their owner's name for them, listed a page at a time from
one storage listing, and a turn's stream carries keepalives through a silent stretch."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from controller import streaming
from controller.auth import create_token
from devkit.client import bearer
from tests.support.client import create_thread, run, stdout

pytestmark = pytest.mark.integration


def as_user(client: Any, user: str) -> httpx.Client:
    token, _ = create_token(client.runtime.store, user)
    return httpx.Client(base_url=client.base_url, headers=bearer(token), timeout=client.timeout)


def test_a_thread_is_reached_by_its_name_as_by_its_id(api: Any) -> None:
    client = api()
    tid = create_thread(client, "demo")
    assert client.get("/threads/demo").json()["id"] == tid
    assert stdout(run(client, "demo", "print(6 * 7)")) == "42\n"
    assert [f["name"] for f in client.get("/threads/demo/files").json()] == []
    with as_user(client, "bob") as bob:  # bob's "demo" is his own, and he has none
        resp = bob.get("/threads/demo")
        assert resp.status_code == 404 and resp.json()["detail"].startswith("No thread 'demo'")
        assert bob.get(f"/threads/{tid}").status_code == 404
    assert client.delete("/threads/demo").status_code == 204
    assert client.get(f"/threads/{tid}").status_code == 404


def test_a_name_that_is_also_another_threads_id_is_ambiguous(api: Any) -> None:
    client = api()
    tid = create_thread(client, "first")
    create_thread(client, tid)  # a thread *named* like the first one's id
    resp = client.get(f"/threads/{tid}")
    assert resp.status_code == 409 and "use the id" in resp.json()["detail"]


def test_threads_come_a_page_at_a_time_from_one_listing(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client = api()
    made = sorted(create_thread(client, f"t{i}") for i in range(5))
    with as_user(client, "carol") as carol:
        assert carol.get("/threads").json() == []  # none of the admin's threads
    calls: list[str] = []
    store = client.runtime.store
    for method in ("page_threads", "page_state", "list_threads", "get_json"):
        real = getattr(store, method)

        def counted(*a: Any, _m: str = method, _f: Callable[..., Any] = real) -> Any:
            calls.append(_m)
            return _f(*a)

        monkeypatch.setattr(store, method, counted)
    for _ in range(2):  # the second time, every record is one this replica has read
        calls.clear()
        pages, url = [], "/threads?limit=2"
        while url:
            resp = client.get(url)
            pages.append([t["id"] for t in resp.json()])
            url = resp.links.get("next", {}).get("url")
        assert [t for page in pages for t in page] == made and [len(p) for p in pages] == [2, 2, 1]
    assert calls == ["page_threads"] * 3


class Counted:
    """A replica's store, counting the calls made through it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attr(*args, **kwargs)

        return counted if callable(attr) else attr


@pytest.fixture(params=["local", "minio"])
def shared_store(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings of one store for several replicas (the local one: api()'s shared data dir)."""
    if request.param == "local":
        return {}
    minio: Any = request.getfixturevalue("minio")
    return {
        "store": "minio",
        "minio_endpoint": minio.endpoint,
        "minio_access_key": minio.access_key,
        "minio_secret_key": minio.secret_key,
        "minio_bucket": f"t-{secrets.token_hex(4)}",
    }


def test_a_cold_replica_pages_a_users_threads_in_calls_bounded_by_the_page(
    api: Any, shared_store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the owner index, a user's page read every other user's API record until it was full."""
    first = api(**shared_store)
    mine = sorted(create_thread(first, f"d{i}", user="dave") for i in range(9))
    for i in range(30):
        create_thread(first, f"e{i}", user="erin")
    cold = api(**shared_store)  # another replica of the same store: it has read no record yet
    with as_user(cold, "dave") as dave:
        store = Counted(cold.runtime.store)
        monkeypatch.setattr(cold.runtime, "store", store)
        pages: list[list[str]] = []
        url: str | None = "/threads?limit=4"
        while url:
            store.calls.clear()
            resp = dave.get(url)
            assert len(store.calls) <= 1 + 4, store.calls  # one listing, a read per thread shown
            pages.append([t["id"] for t in resp.json()])
            url = resp.links.get("next", {}).get("url")
    assert [t for page in pages for t in page] == mine and [len(p) for p in pages] == [4, 4, 1]


def test_a_silent_turn_streams_keepalives(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming, "KEEPALIVE_SECONDS", 0.2)
    client = api()
    tid = create_thread(client, "quiet")
    code = {"code": "import time; time.sleep(1.5); print('after')"}
    with client.stream("POST", f"/threads/{tid}/execute", json=code) as resp:
        types = [json.loads(line)["type"] for line in resp.iter_lines() if line]
    assert "keepalive" in types[: types.index("stdout")] and types[-1] == "done"
    sse = {"Accept": "text/event-stream"}
    with client.stream("POST", f"/threads/{tid}/execute", json=code, headers=sse) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        body = resp.read().decode()
    assert ": keepalive\n\n" in body.split("event: stdout")[0] and "event: done" in body
    assert stdout(run(client, tid, "print(1)")) == "1\n"  # the helpers skip keepalives
