"""The chat seam's shared pipeline on the in-tree fake front-end and fake backend: claims,
thread records, attachments through the upload pipeline, limits, and failures."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from controller.agent.direct import DirectAgent
from controller.backends.fake import FakeBackend
from controller.chat.fake import FakeFile, FakeFrontEnd, FakeReply
from controller.chat.turns import Conversations, Pipeline
from controller.events import Stream
from controller.manager import SandboxManager
from controller.metrics import Metrics
from controller.quotas import Quotas
from controller.stores.local import LocalStore
from controller.threads import get_thread
from tests.unit.test_manager import CONFIG

CODE = "```python\nprint(1)\n```"


@dataclass
class Seam:
    turns: Conversations[str, FakeReply]
    front: FakeFrontEnd
    store: LocalStore


def build(tmp_path: Path, quotas: Quotas) -> Seam:
    """The pipeline on the fake front-end, a fake backend and a local store in ``tmp_path``."""
    store = LocalStore(tmp_path)
    backend = FakeBackend()
    manager = SandboxManager(backend, CONFIG, Metrics(), backend.connect)
    pipeline = Pipeline(store, manager, DirectAgent(manager), quotas, max_code_bytes=100)
    front = FakeFrontEnd()
    return Seam(Conversations(pipeline, front, "fake answers"), front, store)


@pytest.fixture
def setup(tmp_path: Path) -> Seam:
    return build(tmp_path, Quotas(max_file_bytes=10))


def kinds(shown: list[tuple[str, object]]) -> list[str]:
    return [kind for kind, _ in shown]


async def test_a_message_becomes_a_turn_once_however_often_it_is_delivered(setup: Seam) -> None:
    turns, front, store = setup.turns, setup.front, setup.store
    msg = front.message("t1", CODE, "m1")
    assert await turns.take(msg) == "answered"
    assert await turns.take(msg) == "duplicate"
    await turns.drain()
    shown = front.shown["t1"]
    assert kinds(shown)[0] == "start" and kinds(shown)[-1] == "finish"
    assert [e.text for k, e in shown if isinstance(e, Stream)] == ["print(1)\n"]
    record = get_thread(store, msg.key.id)
    assert record is not None and (record.user, record.source) == ("alice", "fake")


async def test_attachments_go_through_the_upload_pipeline_and_refusals_are_sentences(setup: Seam) -> None:
    turns, front, store = setup.turns, setup.front, setup.store
    files = (FakeFile("a.csv", b"x,y\n"), FakeFile("big.csv", b"0" * 11), FakeFile("lost.csv", b"", 3))
    msg = front.message("t2", CODE, "m1", *files)
    await turns.take(msg)
    await turns.drain()
    notes = [str(text) for kind, text in front.shown["t2"] if kind == "note"]  # note(text: str)
    assert len(notes) == 2
    assert "`big.csv`" in notes[0] and "limit" in notes[0]
    assert "`lost.csv`: the platform lost it" in notes[1]
    assert [f.name for f in store.list_files(msg.key.id)] == ["a.csv"]


async def test_a_message_over_the_code_limit_is_not_run(setup: Seam) -> None:
    turns, front = setup.turns, setup.front
    await turns.take(front.message("t3", "x" * 101, "m1"))
    await turns.drain()
    assert kinds(front.shown["t3"]) == ["start", "note", "finish"]
    assert "100-byte limit" in str(front.shown["t3"][1][1])


async def test_a_turn_the_platform_never_started_releases_its_claims_for_the_retry(setup: Seam) -> None:
    turns, front, store = setup.turns, setup.front, setup.store
    front.fail_start = True
    msg = front.message("t4", CODE, "m1")
    await turns.take(msg)
    await turns.drain()
    assert front.errors == ["turn_failed"] and front.shown["t4"] == []
    front.fail_start = False
    assert await turns.take(msg) == "answered"
    await turns.drain()
    assert kinds(front.shown["t4"])[-1] == "finish"
    assert not store.claim(msg.claims[0])


async def test_only_if_active_waits_for_the_thread_record(setup: Seam) -> None:
    turns, front = setup.turns, setup.front
    msg = front.message("t5", CODE, "m1")
    assert await turns.take(replace(msg, only_if_active=True)) == "ignored"
    await turns.take(msg)
    await turns.drain()
    assert (
        await turns.take(replace(msg, message="m2", claims=("fake-message/t5/m2",), only_if_active=True))
        == "answered"
    )
    await turns.drain()
