"""The profile routes over HTTP, on the fake backend and a local store (no kernel, no server):
create with a profile, the pinned and current versions, upgrade, and the refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from controller.agent.direct import DirectAgent
from controller.api import create_app
from controller.backends.fake import FakeBackend
from controller.config import Settings
from controller.manager import ManagerConfig, SandboxManager
from controller.metrics import Metrics
from controller.profiles import ProfileBook, load_profiles
from controller.runtime import Runtime, quotas_from
from controller.storage import StorageGate
from controller.stores.local import LocalStore
from controller.usage.accounting import Accounting, AccountingConfig
from devkit.client import ADMIN_TOKEN, bearer


def runtime(tmp_path: Path, profiles: dict[str, Any]) -> tuple[Runtime, FakeBackend]:
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps({"profiles": profiles}))
    settings = Settings(data_dir=tmp_path, admin_token=ADMIN_TOKEN, profiles_file=path)  # type: ignore[arg-type]
    store, metrics, backend = LocalStore(tmp_path / "store"), Metrics(), FakeBackend()
    book = ProfileBook(load_profiles(settings), store)
    config = ManagerConfig.from_settings(settings)
    manager = SandboxManager(backend, config, metrics, backend.connect, profiles=book)
    accounting = Accounting(store, metrics, AccountingConfig.from_settings(settings))
    storage = StorageGate(store, store.check)
    parts = (manager, DirectAgent(manager), metrics, quotas_from(settings), storage, accounting, book)
    return Runtime(settings, store, backend, *parts), backend


@pytest.fixture
def made(tmp_path: Path) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(profiles: dict[str, Any]) -> tuple[TestClient, FakeBackend]:
        rt, backend = runtime(tmp_path, profiles)
        client = TestClient(create_app(rt), headers=bearer(ADMIN_TOKEN))
        clients.append(client.__enter__())
        return client, backend

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def test_a_thread_is_made_on_a_profile_and_upgraded_to_its_new_version(made: Any) -> None:
    client, backend = made({"data": {"image": "reg/d:1"}})
    created = client.post("/threads", json={"name": "t", "profile": "data"})
    assert created.status_code == 201 and created.json()["profile"] == "data"
    tid = created.json()["id"]
    pinned = client.get(f"/threads/{tid}/profile").json()
    assert pinned["profile"]["image"] == "reg/d:1" and pinned["current"] == pinned["version"]
    listed = client.get("/profiles").json()
    assert [p["profile"]["name"] for p in listed] == ["data", "default"]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ThreadCreate"]
    assert schema["properties"]["profile"]["anyOf"][0]["enum"] == ["data", "default"]
    assert listed[0]["version"] == pinned["version"]
    assert client.post(f"/threads/{tid}/execute", json={"code": "x"}).status_code == 200
    assert backend.profiles[tid].image == "reg/d:1"
    same = client.post(f"/threads/{tid}/upgrade").json()
    assert (same["upgraded"], same["stopped"], same["old"], same["new"]) == (
        False,
        False,
        pinned["version"],
        pinned["version"],
    )

    # A changed file, a restarted controller over the same store.
    client, backend = made({"data": {"image": "reg/d:2"}})
    kept = client.get(f"/threads/{tid}/profile").json()
    assert kept["version"] == pinned["version"] != kept["current"]
    moved = client.post(f"/threads/{tid}/upgrade").json()
    assert moved["upgraded"] and moved["changed"] == ["image"] and moved["new"] == kept["current"]
    assert "image changed" in moved["note"]
    assert client.post(f"/threads/{tid}/execute", json={"code": "x"}).status_code == 200
    assert backend.profiles[tid].image == "reg/d:2"


def test_unknown_and_removed_profiles_are_refused_with_the_known_ones(made: Any) -> None:
    client, _ = made({"data": {}})
    unknown = client.post("/threads", json={"name": "t", "profile": "big"})
    assert unknown.status_code == 400
    assert (
        unknown.json()["detail"]
        == "Unknown profile: there is no profile 'big'; the profiles are: data, default."
    )
    tid = client.post("/threads", json={"name": "t", "profile": "data"}).json()["id"]
    client, _ = made({})
    refused = client.post(f"/threads/{tid}/upgrade")
    assert refused.status_code == 409 and "there is no profile 'data'" in refused.json()["detail"]
    assert client.get(f"/threads/{tid}/profile").json()["current"] is None
    assert client.post("/threads/nosuchthread/upgrade").status_code == 404
