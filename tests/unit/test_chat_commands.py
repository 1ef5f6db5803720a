"""The chat commands (``forget state``, ``fork``, ``upgrade``) on the in-tree fake front-end and fake backend:
which messages are commands, and what each one does and says; the agent never sees them."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.chat import commands
from controller.chat.commands import NOTHING_YET, forgotten, fork_intro
from controller.profiles import ProfileBook
from controller.quotas import Quotas
from controller.threads import get_thread
from tests.unit.test_chat_seam import CODE, Seam, build, kinds
from tests.unit.test_profiles import profiles


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("forget state", "forget"),
        ("  Forget State. ", "forget"),
        ("/forget", "forget"),
        ("fork", "fork"),
        ("/FORK!", "fork"),
        ("Upgrade", "upgrade"),
        ("/upgrade", "upgrade"),
        ("upgrade now", None),
        ("forget", None),
        ("please fork this", None),
        ("forget state and run", None),
        ("/human", None),
    ],
)
def test_commands_are_whole_messages(text: str, expected: str | None) -> None:
    assert commands.command(text) == expected


async def say(seam: Seam, thread: str, text: str, message: str) -> None:
    await seam.turns.take(seam.front.message(thread, text, message))
    await seam.turns.drain()


def thread_with_a_file(seam: Seam, tmp_path: Path, thread: str) -> str:
    """A thread that ran a turn (its sandbox stays live), with a 100-byte file."""
    data = tmp_path / "data.bin"
    data.write_bytes(b"d" * 100)
    thread_id = seam.front.message(thread, "", "").key.id
    seam.store.put_file(thread_id, "data.bin", data, "sha-data")
    return thread_id


async def test_forget_state_stops_the_sandbox_and_says_so_without_a_turn(tmp_path: Path) -> None:
    seam = build(tmp_path / "store", Quotas())
    await say(seam, "t1", CODE, "m1")
    await say(seam, "t1", "Forget state.", "m2")
    assert seam.front.shown["t1"][-1] == ("said", forgotten(True))
    assert kinds(seam.front.shown["t1"]).count("start") == 1  # the command was no turn
    await say(seam, "t1", "/forget", "m3")
    assert seam.front.shown["t1"][-1] == ("said", forgotten(False))


async def test_fork_opens_a_thread_with_a_copy_and_the_original_says_where(tmp_path: Path) -> None:
    seam = build(tmp_path / "store", Quotas())
    original = thread_with_a_file(seam, tmp_path, "t2")
    await say(seam, "t2", CODE, "m1")
    await say(seam, "t2", "fork", "m2")
    source = get_thread(seam.store, original)
    assert source is not None
    assert seam.front.shown["t2-fork-1"] == [("said", fork_intro(source))]
    fork_id = seam.front.message("t2-fork-1", "", "").key.id
    fork = get_thread(seam.store, fork_id)
    assert fork is not None and (fork.forked_from, fork.user) == (original, "alice")
    assert [f.name for f in seam.store.list_files(fork_id)] == ["data.bin"]
    said = seam.front.shown["t2"][-1]
    assert said[0] == "said" and str(said[1]).startswith(
        "Forked into t2-fork-1. Forked with 1 file(s), 100 bytes"
    )

    before = list(seam.front.shown["t2"])
    await say(seam, "t2-fork-1", CODE, "m3")  # the fork's thread takes turns of its own
    assert kinds(seam.front.shown["t2-fork-1"])[1] == "start" and seam.front.shown["t2"] == before


async def test_a_refused_fork_says_so_in_both_threads_and_makes_no_thread(tmp_path: Path) -> None:
    seam = build(tmp_path / "store", Quotas(user_max_bytes=150))
    thread_with_a_file(seam, tmp_path, "t3")
    await say(seam, "t3", CODE, "m1")
    await say(seam, "t3", "fork", "m2")
    original, opened = seam.front.shown["t3"][-1], seam.front.shown["t3-fork-1"][-1]
    assert str(original[1]).startswith("I could not fork this thread: the fork") and "Nothing changed" in str(
        original[1]
    )
    assert str(opened[1]).startswith("Forking failed, so nothing was copied here")
    assert len(seam.store.list_threads()) == 1


async def test_where_no_thread_can_be_opened_the_fork_is_a_sentence(tmp_path: Path) -> None:
    seam = build(tmp_path / "store", Quotas())
    seam.front.opens = False
    await say(seam, "t4", CODE, "m1")
    await say(seam, "t4", "/fork", "m2")
    assert seam.front.shown["t4"][-1] == ("said", "I could not fork this thread: this place has no threads.")
    assert len(seam.store.list_threads()) == 1


async def test_a_command_that_would_start_a_thread_starts_none(tmp_path: Path) -> None:
    seam = build(tmp_path / "store", Quotas())
    for message, text in enumerate(("fork", "forget state", "upgrade")):
        await say(seam, "t5", text, f"m{message}")
    assert seam.front.shown["t5"] == [("said", NOTHING_YET)] * 3
    assert seam.store.list_threads() == []


async def test_upgrade_moves_the_thread_to_its_profile_s_current_version(tmp_path: Path) -> None:
    seam = build(tmp_path / "store", Quotas())
    manager = seam.turns.p.manager

    def image(tag: str) -> None:
        spec = {"profiles": {"data": {"image": f"reg/d:{tag}"}}, "routes": {"fake": "data"}}
        manager.profiles = ProfileBook(profiles(spec), seam.store)

    image("1")
    await say(seam, "t6", CODE, "m1")
    await say(seam, "t6", "upgrade", "m2")
    assert "already runs the current version of profile data" in str(seam.front.shown["t6"][-1][1])
    image("2")
    await say(seam, "t6", "/upgrade", "m3")
    said = str(seam.front.shown["t6"][-1][1])
    assert said.startswith("Profile data: ") and "(image changed)" in said, said
    assert not manager.is_live(seam.front.message("t6", "", "").key.id)  # the next turn starts anew
    assert kinds(seam.front.shown["t6"]).count("start") == 1  # neither command was a turn


async def test_upgrade_to_a_profile_that_is_gone_keeps_the_version_and_says_why(tmp_path: Path) -> None:
    seam = build(tmp_path / "store", Quotas())
    manager = seam.turns.p.manager
    spec = {"profiles": {"data": {}}, "routes": {"fake": "data"}}
    manager.profiles = ProfileBook(profiles(spec), seam.store)
    await say(seam, "t7", CODE, "m1")
    manager.profiles = ProfileBook(profiles({}), seam.store)
    await say(seam, "t7", "upgrade", "m2")
    said = str(seam.front.shown["t7"][-1][1])
    assert said.startswith("I could not upgrade this thread: there is no profile 'data'"), said
    assert said.endswith("It keeps its version.")
