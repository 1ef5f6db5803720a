"""Sandbox profiles: the file, versions, routes, pins kept in the store, and the upgrade of a
thread on the fake backend (its sandbox saved and stopped, the next turn on the new version)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from controller.agent.prompt import INSTRUCTIONS, system_prompt
from controller.backends.fake import FakeBackend
from controller.config import Settings
from controller.events import Done, Error, Event
from controller.identity import ThreadKey
from controller.manager import SandboxManager
from controller.metrics import Metrics
from controller.profiles import (
    DEFAULT,
    ProfileBook,
    ProfileError,
    Profiles,
    ProfilesFile,
    UnknownProfile,
    load_profiles,
    profile_changes,
    version_key,
)
from controller.quotas import Quotas
from controller.stores.local import LocalStore
from controller.threadops import ThreadOps, upgrade_thread
from controller.threads import ThreadRecord, ensure_thread
from tests.support.poll import until
from tests.unit.test_manager import CONFIG as MANAGER

TIMEOUT = 10
CONFIG = replace(MANAGER, keep_state=True, state_max_bytes=1 << 20)


def profiles(spec: dict[str, Any], **settings: Any) -> Profiles:
    return Profiles.from_file(ProfilesFile.model_validate(spec), Settings(**settings))


def test_without_a_file_the_default_profile_is_the_server_as_configured(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, sandbox_image="reg/sbx:1", idle_timeout=60, keep_state=False)
    only = load_profiles(settings)
    assert only.names == [DEFAULT] and only.default == DEFAULT
    default = only.get(DEFAULT)
    assert (default.image, default.idle_timeout, default.keep_state) == ("reg/sbx:1", 60, False)
    assert default.cpu_limit == settings.sandbox_cpu_limit and default.libraries is None
    # The version names the content: the same settings give the same one, a change another.
    assert load_profiles(settings).get(DEFAULT).version == default.version
    changed = load_profiles(settings.model_copy(update={"sandbox_image": "reg/sbx:2"})).get(DEFAULT)
    assert changed.version != default.version and profile_changes(default, changed) == ["image"]


def test_a_profile_sets_what_it_names_and_inherits_the_rest() -> None:
    found = profiles(
        {"profiles": {"gpu": {"image": "reg/gpu:1", "memory_limit": "8Gi", "warm_pool_size": 2}}},
        sandbox_memory_request="1Gi",
    )
    gpu = found.get("gpu")
    assert (gpu.image, gpu.memory_limit, gpu.memory_request, gpu.warm_pool_size) == (
        "reg/gpu:1",
        "8Gi",
        "1Gi",
        2,
    )
    assert found.names == ["default", "gpu"] and gpu.version != found.get(DEFAULT).version


def test_unknown_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(UnknownProfile, match="there is no profile 'big'; the profiles are: default, gpu"):
        profiles({"profiles": {"gpu": {}}}).get("big")
    for bad in ({"default": "big"}, {"routes": {"slack/T1": "big"}}):
        with pytest.raises(ValueError, match="no profile 'big'"):
            ProfilesFile.model_validate(bad)
    with pytest.raises(ValueError, match="profile name 'Big Box'"):
        ProfilesFile.model_validate({"profiles": {"Big Box": {}}})


def test_a_bad_file_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    cases = {
        "{": "is not JSON",
        json.dumps({"profiles": {"a": {"imagee": "x"}}}): "profiles/a/imagee: Extra inputs",
        json.dumps({"profiles": {"a": {"egress_allow_cidrs": ["10.0.0.1/8"]}}}): "egress_allow_cidrs",
        json.dumps({"default": "nope"}): "is invalid: default: there is no profile 'nope'",
    }
    for text, problem in cases.items():
        path.write_text(text)
        with pytest.raises(ProfileError, match=problem):
            load_profiles(Settings(profiles_file=path))
    with pytest.raises(ProfileError, match="cannot read"):
        load_profiles(Settings(profiles_file=tmp_path / "missing.json"))


def record(source: str, workspace: str, channel: str, profile: str | None = None) -> ThreadRecord:
    key = ThreadKey(source, workspace, channel, "t")
    return ThreadRecord(
        id=key.id,
        name="t",
        source=source,
        workspace=workspace,
        channel=channel,
        thread="t",
        created=0,
        profile=profile,
    )


def test_the_most_specific_route_wins_and_an_api_choice_over_all() -> None:
    names: dict[str, dict[str, Any]] = {n: {} for n in ("a", "b", "c", "d")}
    routes = {"slack": "a", "slack/T1": "b", "slack/T1/C1": "c"}
    found = profiles({"profiles": names, "routes": routes, "default": "d"})
    assert found.route(record("slack", "T1", "C1")) == "c"
    assert found.route(record("slack", "T1", "C2")) == "b"
    assert found.route(record("slack", "T2", "C1")) == "a"
    assert found.route(record("telegram", "T1", "C1")) == "d"
    assert found.route(record("slack", "T1", "C1", profile="a")) == "a"


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def thread(store: LocalStore, name: str = "t", profile: str | None = None) -> ThreadRecord:
    return ensure_thread(store, ThreadKey("api", "alice", "console", name), name, "alice", profile)


def test_a_thread_keeps_its_pinned_version_across_changes_and_restarts(store: LocalStore) -> None:
    before = ProfileBook(profiles({"profiles": {"data": {"image": "reg/d:1"}}}), store)
    one = thread(store, profile="data")
    pinned = before.of(one.id)
    assert pinned.image == "reg/d:1" and store.get_state(version_key("data", pinned.version))
    # The file changed and the controller restarted: a new book, the same store.
    after = ProfileBook(profiles({"profiles": {"data": {"image": "reg/d:2"}}}), store)
    assert after.of(one.id) == pinned
    assert after.of(thread(store, "new", profile="data").id).image == "reg/d:2"
    old, new = after.upgrade_target(one)
    assert (old, new.image) == (pinned, "reg/d:2")
    after.pin(one.id, new)
    assert after.of(one.id) == new


def test_a_removed_profile_or_a_lost_version_is_a_clear_error(store: LocalStore) -> None:
    book = ProfileBook(profiles({"profiles": {"data": {}}}), store)
    one = thread(store, profile="data")
    pinned = book.of(one.id)
    gone = ProfileBook(profiles({}), store)
    assert gone.of(one.id) == pinned  # still runs as it was
    with pytest.raises(UnknownProfile, match="no profile 'data'"):
        gone.upgrade_target(one)
    store.delete_state(version_key("data", pinned.version))
    changed = ProfileBook(profiles({"profiles": {"data": {"image": "other"}}}), store)
    with pytest.raises(ProfileError, match="no longer stored; upgrade it"):
        changed.of(one.id)
    assert changed.upgrade_target(one)[0] is None


def test_a_thread_without_a_record_gets_the_default_unpinned(store: LocalStore) -> None:
    book = ProfileBook(profiles({}), store)
    assert book.of("api-aaaaaaaaaaaaaaaa").name == DEFAULT
    assert book.pinned("api-aaaaaaaaaaaaaaaa") is None


def test_the_prompt_tells_a_profile_s_libraries_and_instructions() -> None:
    spec = {"profiles": {"geo": {"libraries": ["geopandas"], "system_prompt": "Maps {x}; run {tool}."}}}
    geo = profiles(spec).get("geo")
    prompt = system_prompt([], [], "run_python", geo)
    assert prompt.startswith("Maps {x}; run run_python.") and "Preinstalled libraries: geopandas." in prompt
    plain = system_prompt([], [], "run_python", profiles({}).get(DEFAULT))
    assert plain.startswith(INSTRUCTIONS.format(tool="run_python"))


async def drain(events: Any) -> list[Event]:
    return [e async for e in events]


async def test_upgrade_saves_and_stops_the_sandbox_and_the_next_turn_runs_the_new_version(
    store: LocalStore,
) -> None:
    backend = FakeBackend()
    book = ProfileBook(profiles({"profiles": {"data": {"image": "reg/d:1"}}}), store)
    manager = SandboxManager(backend, CONFIG, Metrics(), backend.connect, profiles=book)
    ops = ThreadOps(store, manager, Quotas(), True)
    one = thread(store, profile="data")
    async with asyncio.timeout(TIMEOUT):
        assert isinstance((await drain(manager.run(one.id, "x = 1")))[-1], Done)
        assert backend.profiles[one.id].image == "reg/d:1"
        same = await upgrade_thread(ops, one)
        assert not same.upgraded and not same.stopped and "already runs" in same.note

        manager.profiles = book = ProfileBook(profiles({"profiles": {"data": {"image": "reg/d:2"}}}), store)
        assert (await asyncio.to_thread(book.of, one.id)).image == "reg/d:1"  # until the upgrade
        backend.log.clear()
        done = await upgrade_thread(ops, one)
        assert done.upgraded and done.stopped and done.changed == ["image"]
        assert done.old == backend.profiles[one.id].version != done.new
        steps = [op for op, _ in backend.log]
        assert steps.index("save state") < steps.index("persist") < steps.index("stop")
        assert not manager.is_live(one.id)

        await drain(manager.run(one.id, "x"))
        assert backend.profiles[one.id].image == "reg/d:2"
        assert ("load state", one.id) in backend.log
    await manager.close()


async def test_a_profile_that_keeps_no_state_saves_none_and_has_its_own_idle_timeout(
    store: LocalStore,
) -> None:
    backend = FakeBackend()
    spec = {"profiles": {"light": {"keep_state": False, "idle_timeout": 0.001}}}
    book = ProfileBook(profiles(spec), store)
    manager = SandboxManager(backend, CONFIG, Metrics(), backend.connect, profiles=book)
    light, plain = thread(store, "l", profile="light"), thread(store, "p")
    async with asyncio.timeout(TIMEOUT):
        for one in (light, plain):
            await drain(manager.run(one.id, "x"))
        # What the reaper checks, past for light: on a fast pass, plain's turn takes under 1 ms.
        idle_since = time.time()
        await until(lambda: time.time() > idle_since + 0.001, TIMEOUT, interval=0)
        assert await manager.reap_once() == [light.id]  # the default's timeout is the server's
        assert ("persist", light.id) in backend.log and ("save state", light.id) not in backend.log
    await manager.close()


async def test_a_pinned_older_version_that_cannot_start_says_how_to_upgrade(store: LocalStore) -> None:
    backend = FakeBackend()
    book = ProfileBook(profiles({"profiles": {"data": {"image": "reg/d:1"}}}), store)
    manager = SandboxManager(backend, CONFIG, Metrics(), backend.connect, profiles=book)
    old, fresh = thread(store, "o", profile="data"), thread(store, "f", profile="data")
    await asyncio.to_thread(book.of, old.id)  # pinned to reg/d:1
    manager.profiles = ProfileBook(profiles({"profiles": {"data": {"image": "reg/d:2"}}}), store)
    backend.start_error = RuntimeError("ErrImagePull: not found")
    async with asyncio.timeout(TIMEOUT):
        stale = [e for e in await drain(manager.run(old.id, "1")) if isinstance(e, Error)]
        current = [e for e in await drain(manager.run(fresh.id, "1")) if isinstance(e, Error)]
    assert [e.kind for e in stale + current] == ["sandbox_failed"] * 2
    assert stale[0].evalue.startswith("ErrImagePull: not found. This thread runs an older version")
    assert "profile data (image reg/d:1)" in stale[0].evalue and "`upgrade`" in stale[0].evalue
    assert current[0].evalue == "ErrImagePull: not found"  # the current version: nothing to upgrade to
    await manager.close()


def test_preimports_are_a_profile_field_that_leaves_older_versions_as_they_were() -> None:
    plain = profiles({}).get(DEFAULT)
    # The version as it was hashed before the field existed: an unset field changes no pin.
    before = json.dumps(plain.model_dump(mode="json", exclude={"name", "preimport"}), sort_keys=True)
    assert plain.version == hashlib.sha256(before.encode()).hexdigest()[:12]
    warm = profiles({"profiles": {"data": {"preimport": ["pandas"]}}}, warm_preimport="numpy")
    assert (warm.get("data").preimport, warm.get(DEFAULT).preimport) == (("pandas",), ("numpy",))
    assert warm.get(DEFAULT).version != plain.version
    with pytest.raises(ValueError, match="not module names"):
        profiles({"profiles": {"data": {"preimport": ["pandas as pd"]}}})
