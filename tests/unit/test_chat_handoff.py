"""Operator handoff on the in-tree fake front-end and fake backend: the pure decisions with a
moved clock, and the flow (user asks, messages go to the operator, replies come back, code the
operator sends runs in the user's sandbox, /bot and the time-out give the thread back)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.agent import ask_human
from controller.agent.base import Turn
from controller.agent.direct import DirectAgent
from controller.backends.fake import FakeBackend
from controller.chat import handoff
from controller.chat.fake import FakeFrontEnd, FakeReply
from controller.chat.handoff import TO_BOT, TO_HUMAN, Handoff, HandoffConfig, decide
from controller.chat.turns import Conversations, Pipeline
from controller.events import Done, Event, Message, Stream
from controller.identity import ThreadKey
from controller.manager import SandboxManager
from controller.metrics import Metrics
from controller.quotas import Quotas
from controller.stores.local import LocalStore
from controller.telegram.operator import Where, desk_name, desk_root
from controller.threads import ThreadRecord, ensure_thread
from tests.unit.test_manager import CONFIG

CONFIG_60 = HandoffConfig(timeout=60, keywords=("refund", "speak to someone"))
CODE = "```python\nprint(6 * 7)\n```"
OUT = "print(6 * 7)\n"  # the fake kernel echoes the code it runs


# -- pure ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("human", "human"),
        ("  /Human! ", "human"),
        ("talk to a person.", "human"),
        ("/bot", "bot"),
        ("bot", "bot"),
        ("a human wrote this", None),
        ("robot", None),
    ],
)
def test_commands_are_whole_messages(text: str, expected: str | None) -> None:
    assert handoff.command(text) == expected


def test_keywords_match_whole_words_only() -> None:
    assert handoff.keyword("I want a REFUND now", CONFIG_60.keywords) == "refund"
    assert handoff.keyword("Can I speak to someone?", CONFIG_60.keywords) == "speak to someone"
    assert handoff.keyword("it was refunded", CONFIG_60.keywords) is None


def test_decisions_in_each_state() -> None:
    bot, human = Handoff(), Handoff().to_human("user", now=1000, desk="d")
    assert decide(bot, "print(1)", CONFIG_60, 1000) == ("agent", None)
    assert decide(bot, "human", CONFIG_60, 1000) == ("hand_off", "user")
    assert decide(bot, "a refund please", CONFIG_60, 1000) == ("hand_off", "keyword")
    assert decide(human, "human", CONFIG_60, 1059) == ("forward", None)
    assert decide(human, "hello?", CONFIG_60, 1060) == ("time_out", "timeout")
    assert decide(human.touched(1050), "hello?", CONFIG_60, 1100) == ("forward", None)
    assert decide(human, "hello?", HandoffConfig(timeout=0), 10**9) == ("forward", None)


def test_transitions_count_versions_and_keep_the_desk() -> None:
    human = Handoff().to_human("agent", now=5, desk="d1")
    back = human.to_bot("operator", now=9)
    assert (human.human, human.version, human.cause, human.desk) == (True, 1, "agent", "d1")
    assert (back.human, back.version, back.since, back.desk) == (False, 2, 9, "d1")
    assert human.touched(7).model_dump() == {**human.model_dump(), "version": 2, "last": 7}


def test_a_version_is_written_once_and_a_remade_thread_starts_afresh(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    record = ensure_thread(store, ThreadKey("fake", "w", "c", "t"), "t", "alice")
    first = Handoff().to_human("user", 1, "d")
    assert handoff.save(store, record, first)
    assert not handoff.save(store, record, Handoff().to_human("keyword", 2, "d"))  # a racing replica
    assert handoff.load(store, record.id) == first
    store.delete_thread(record.id)
    remade = record.model_copy(update={"created": record.created + 1})  # the same id, made again
    assert handoff.save(store, remade, first)


# -- the flow -----------------------------------------------------------------------------------


@dataclass
class Seam:
    turns: Conversations[str, FakeReply]
    front: FakeFrontEnd
    store: LocalStore
    metrics: Metrics
    now: list[float]

    async def say(self, thread: str, text: str, message: str) -> None:
        self.now[0] += 1  # history keeps exchanges in time order
        await self.turns.take(self.front.message(thread, text, message))
        await self.turns.drain()

    async def operator(self, desk: str, text: str, message: str) -> None:
        self.now[0] += 1
        assert await self.turns.desk.take(self.front.operator(desk, text, message))
        await self.turns.drain()

    def count(self, to: str, cause: str) -> float | None:
        return self.metrics.registry.get_sample_value("threadbox_handoffs_total", {"to": to, "cause": cause})


class AsksAHuman:
    """An agent that calls ask_a_human on "help", else runs the message as code."""

    name = "asks"

    def __init__(self, manager: SandboxManager) -> None:
        self.direct = DirectAgent(manager)
        self.turns: list[str] = []

    async def respond(self, turn: Turn) -> AsyncIterator[Event]:
        self.turns.append(turn.text)
        if turn.text == "help":
            ask_human.ask('{"reason": "billing question"}')
            yield Message(text="I am asking a person.")
            yield Done(status="ok")
            return
        async for event in self.direct.respond(turn):
            yield event


def build(tmp_path: Path, operators: str | None = "ops") -> tuple[Seam, AsksAHuman]:
    store, backend, metrics = LocalStore(tmp_path), FakeBackend(), Metrics()
    manager = SandboxManager(backend, CONFIG, metrics, backend.connect)
    agent = AsksAHuman(manager)
    pipeline = Pipeline(store, manager, agent, Quotas(), 1000, CONFIG_60)
    front = FakeFrontEnd(operators)
    turns = Conversations(pipeline, front, "fake answers")
    now = [1000.0]
    turns.desk.clock = lambda: now[0]
    return Seam(turns, front, store, metrics, now), agent


def said(seam: Seam, thread: str) -> list[object]:
    return [text for kind, text in seam.front.shown[thread] if kind == "said"]


def outputs(seam: Seam, thread: str) -> list[str]:
    return [e.text for k, e in seam.front.shown[thread] if isinstance(e, Stream)]


async def test_a_user_hands_off_the_operator_answers_and_gives_it_back(tmp_path: Path) -> None:
    seam, agent = build(tmp_path)
    await seam.say("t1", "human", "m1")
    assert said(seam, "t1") == [TO_HUMAN] and agent.turns == []
    [desk] = seam.front.desks
    assert "yours" in seam.front.desks[desk][0] and "alice: human" in seam.front.desks[desk][0]

    await seam.say("t1", "are you there?", "m2")
    assert seam.front.desks[desk][-1] == "alice: are you there?" and agent.turns == []

    await seam.operator(desk, "Yes, Olga here.", "o1")
    assert said(seam, "t1")[-1] == "Yes, Olga here."
    await seam.operator(desk, CODE, "o2")  # runs in the user's sandbox, shown on both sides
    assert outputs(seam, "t1") == [OUT] and OUT in seam.front.desks[desk][-1]

    await seam.operator(desk, "/bot", "o3")
    assert said(seam, "t1")[-1] == TO_BOT and TO_BOT in seam.front.desks[desk][-1]
    await seam.say("t1", CODE, "m3")
    assert agent.turns == [CODE] and outputs(seam, "t1") == [OUT, OUT]
    assert (seam.count("human", "user"), seam.count("bot", "operator")) == (1, 1)
    history = seam.store.list_json(ThreadKey("fake", "w", "c", "t1").id, "history")
    contents = [m["content"] for e in history.values() for m in e["messages"]]
    assert contents[:3] == ["human", TO_HUMAN, "are you there?"] and TO_BOT in contents


async def test_the_operator_silent_past_the_time_out_gives_the_thread_back(tmp_path: Path) -> None:
    seam, agent = build(tmp_path)
    await seam.say("t2", "I need a refund", "m1")
    [desk] = seam.front.desks
    seam.now[0] += 30
    await seam.operator(desk, "Looking into it.", "o1")
    seam.now[0] += 58  # with say's 1 s: 59 s after the operator's last word, still theirs
    await seam.say("t2", "thanks", "m2")
    assert agent.turns == []
    await seam.say("t2", CODE, "m3")
    assert said(seam, "t2")[-1] == TO_BOT and agent.turns == [CODE]
    assert seam.count("human", "keyword") == seam.count("bot", "timeout") == 1
    assert "time-out" in seam.front.desks[desk][-1]


async def test_the_agent_asks_a_human_after_its_answer(tmp_path: Path) -> None:
    seam, agent = build(tmp_path)
    await seam.say("t3", "help", "m1")
    kinds = [kind for kind, _ in seam.front.shown["t3"]]
    assert kinds[-2:] == ["finish", "said"] and said(seam, "t3") == [TO_HUMAN]
    [desk] = seam.front.desks
    assert "the assistant: billing question" in seam.front.desks[desk][0]
    assert seam.count("human", "agent") == 1
    await seam.say("t3", "hello", "m2")
    assert agent.turns == ["help"]


async def test_without_a_destination_there_is_no_handoff_and_no_tool(tmp_path: Path) -> None:
    seam, agent = build(tmp_path, operators=None)
    await seam.say("t4", "human", "m1")
    assert agent.turns == ["human"] and seam.front.desks == {}
    assert not await seam.turns.desk.take(seam.front.operator("desk-1", "hi", "o1"))
    with seam.turns.desk.offering():
        assert ask_human.offered() == []


async def test_operator_messages_outside_a_handoff_are_not_sent(tmp_path: Path) -> None:
    seam, _ = build(tmp_path)
    await seam.operator("desk-9", "chatting among operators", "o1")  # no thread there
    assert seam.front.shown == {} and seam.front.desks == {}
    await seam.say("t5", "human", "m1")
    [desk] = seam.front.desks
    await seam.operator(desk, "/bot", "o2")
    await seam.operator(desk, "late words", "o3")
    assert said(seam, "t5") == [TO_HUMAN, TO_BOT] and "not sent" in seam.front.desks[desk][-1]
    await seam.operator(desk, "human", "o4")  # the operator takes it again, in the same desk
    assert said(seam, "t5")[-1] == TO_HUMAN and list(seam.front.desks) == [desk]
    assert not await seam.turns.desk.take(seam.front.operator(desk, "human", "o4"))  # a redelivery


def test_telegram_desks_and_places_from_the_thread_key() -> None:
    def record(thread: str) -> ThreadRecord:
        return ThreadRecord(
            id="t", name="t", source="telegram", workspace="1", channel="-100", thread=thread, created=0
        )

    assert Where.of(record("topic-7")) == Where(-100, 7, None)
    assert Where.of(record("msg-42")) == Where(-100, None, 42)
    assert desk_root(desk_name(-5, 9), -5) == 9
    assert desk_root(desk_name(-6, 9), -5) is None and desk_root(None, -5) is None
