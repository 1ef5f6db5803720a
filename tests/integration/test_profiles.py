"""Sandbox profiles on the local backend, with real kernels (issue 15): a thread keeps its
profile version when the file changes and the controller restarts; an upgrade moves it, and
its files and variables are there in the new version; unknown or removed profiles are refused
with a sentence, and a bad file stops the server before it serves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller.runtime import UnsafeConfiguration, build_runtime
from tests.integration.test_kernel_state import controller, state_notes
from tests.support.client import create_thread, run, stdout

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def write(path: Path, profiles: dict[str, Any], **rest: Any) -> Path:
    path.write_text(json.dumps({"profiles": profiles, **rest}))
    return path


def test_a_thread_keeps_its_version_across_a_restart_until_its_upgrade(
    make_settings: Any, tmp_path: Path
) -> None:
    path = write(tmp_path / "profiles.json", {"data": {"libraries": ["pandas"]}})
    with controller(make_settings, profiles_file=path) as client:
        made = client.post("/threads", json={"name": "old", "profile": "data"})
        assert made.status_code == 201 and made.json()["profile"] == "data", made.text
        tid = made.json()["id"]
        first = client.get(f"/threads/{tid}/profile").json()
        assert first["current"] == first["version"] and first["profile"]["libraries"] == ["pandas"]
        stdout(run(client, tid, "x = 41; open('kept.txt', 'w').write('f')"))

    # The profile changes while the thread's variables are saved by the controller's shutdown.
    write(path, {"data": {"libraries": ["pandas", "polars"]}})
    with controller(make_settings, profiles_file=path) as client:
        pinned = client.get(f"/threads/{tid}/profile").json()
        assert pinned["version"] == first["version"] != pinned["current"]
        assert pinned["profile"]["libraries"] == ["pandas"]
        assert stdout(run(client, tid, "x += 1; print(x)")) == "42\n"
        fresh = client.post("/threads", json={"name": "new", "profile": "data"}).json()["id"]
        assert client.get(f"/threads/{fresh}/profile").json()["version"] == pinned["current"]

        up = client.post(f"/threads/{tid}/upgrade")
        assert up.status_code == 200, up.text
        moved = up.json()
        assert moved["upgraded"] and moved["stopped"] and moved["changed"] == ["libraries"]
        assert (moved["old"], moved["new"]) == (first["version"], pinned["current"])
        assert not client.runtime.manager.is_live(tid)  # type: ignore[attr-defined]
        events = run(client, tid, "print(open('kept.txt').read(), x)")
        assert state_notes(events) == ["Kernel state: restored x."] and stdout(events) == "f 42\n"
        assert client.get(f"/threads/{tid}/profile").json()["version"] == pinned["current"]
        again = client.post(f"/threads/{tid}/upgrade").json()
        assert not again["upgraded"] and not again["stopped"] and "already runs" in again["note"]

        unknown = client.post("/threads", json={"name": "u", "profile": "nope"})
        assert unknown.status_code == 400
        assert "there is no profile 'nope'; the profiles are: data, default" in unknown.json()["detail"]
        assert [p["profile"]["name"] for p in client.get("/profiles").json()] == ["data", "default"]

    # Removed from the file: the thread goes on with its version, and cannot be upgraded.
    write(path, {})
    with controller(make_settings, profiles_file=path) as client:
        assert client.get(f"/threads/{tid}/profile").json()["current"] is None
        refused = client.post(f"/threads/{tid}/upgrade")
        assert refused.status_code == 409 and "no profile 'data'" in refused.json()["detail"]
        assert stdout(run(client, tid, "print(x)")) == "42\n"


def test_a_thread_no_one_gave_a_profile_gets_its_route_s(make_settings: Any, tmp_path: Path) -> None:
    path = write(tmp_path / "p.json", {"quick": {"keep_state": False}}, routes={"api/alice": "quick"})
    with controller(make_settings, profiles_file=path) as client:
        tid = create_thread(client, "routed", user="alice")
        assert client.get(f"/threads/{tid}/profile").json()["profile"]["name"] == "quick"
        assert (
            client.get(f"/threads/{create_thread(client, 'other', user='bob')}/profile").json()["profile"][
                "name"
            ]
            == "default"
        )


def test_a_bad_profiles_file_stops_the_server_with_a_sentence(make_settings: Any, tmp_path: Path) -> None:
    path = write(tmp_path / "p.json", {"a": {}}, default="b")
    with pytest.raises(
        UnsafeConfiguration, match=r"THREADBOX_PROFILES_FILE: .*default: there is no profile 'b'"
    ):
        build_runtime(make_settings(profiles_file=path))
