"""Operator handoff on Telegram: webhook updates through the real app, python-telegram-bot
against the Bot API stand-in, the fake LLM (which must get no request while a person has the
thread), real kernels, and a controller restarted over the same local store mid-handoff."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest

from controller.chat.handoff import TO_BOT, TO_HUMAN
from devkit.fake_telegram import FakeTelegram, serve_fake_telegram
from devkit.telegram_updates import TelegramSender, telegram_settings
from tests.integration.test_telegram_turns import GROUP, wait_text
from tests.support.fake_openai import FakeOpenAI, Text, fake_llm
from tests.support.restart import chat_controller, llm_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

OPS = -1009999


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with serve_fake_telegram() as fake:
        yield fake


@contextmanager
def controller(make_settings: Any, tg: FakeTelegram, llm: FakeOpenAI) -> Iterator[TelegramSender]:
    """A controller on the test's data dir (each one started anew reads the same local store)."""
    settings = telegram_settings(tg, telegram_operator_chat=OPS)
    with chat_controller(make_settings, **settings, **llm_settings(llm)) as chat:
        yield TelegramSender(SimpleNamespace(chat=chat))  # type: ignore[arg-type]


def desk_of(tg: FakeTelegram) -> int:
    """The reply chain the bot started in the operator chat."""

    def roots() -> list[int]:
        bots = [m for m in list(tg.messages) if m["chat"]["id"] == OPS and m["from"]["is_bot"]]
        return [m["message_id"] for m in bots if "reply_to_message" not in m]

    return tg.wait_for(roots, 60, "a chain in the operator chat")[0]


def test_a_person_takes_the_thread_over_a_restart_and_gives_it_back(
    make_settings: Any, tg: FakeTelegram
) -> None:
    with fake_llm() as llm:
        with controller(make_settings, tg, llm) as sender:
            asked = tg.user_says(GROUP, "human", mention=True)
            assert sender.deliver(asked).status_code == 200
            root = asked["message"]["message_id"]
            wait_text(tg, GROUP, root, TO_HUMAN)
            desk = desk_of(tg)
            wait_text(tg, OPS, desk, "yours", "human")
            sender.deliver(tg.user_says(GROUP, "My invoice is wrong.", reply_to=root))
            wait_text(tg, OPS, desk, "My invoice is wrong.")
            sender.deliver(tg.user_says(OPS, "Hello, Olga here. Let me look.", reply_to=desk))
            wait_text(tg, GROUP, root, "Olga here")

        with controller(make_settings, tg, llm) as sender:  # restarted: the handoff goes on
            sender.deliver(tg.user_says(GROUP, "Still there?", reply_to=root))
            wait_text(tg, OPS, desk, "Still there?")
            sender.deliver(tg.user_says(OPS, code="total = 6 * 7\nprint('total is', total)", reply_to=desk))
            wait_text(tg, GROUP, root, "total is 42")
            wait_text(tg, OPS, desk, "total is 42")
            assert llm.requests == []  # the agent said nothing while a person had the thread

            sender.deliver(tg.user_says(OPS, "/bot", reply_to=desk))
            wait_text(tg, GROUP, root, TO_BOT)
            llm.add(Text("Glad it is sorted. Anything else?", when="Thanks!"))
            sender.deliver(tg.user_says(GROUP, "Thanks!", reply_to=root))
            wait_text(tg, GROUP, root, "Anything else?")
    [request] = llm.requests
    told = [str(m.get("content")) for m in request["messages"]]
    assert TO_HUMAN in told and "My invoice is wrong." in told and any("Olga here" in t for t in told)
