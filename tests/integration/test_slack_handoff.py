"""Operator handoff on Slack: signed events through the real app, the fake Slack Web API, the
fake LLM (which must get no request while a person has the thread), real kernels, and a
controller restarted over the same local store in the middle of a handoff."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from controller.chat.handoff import TO_BOT, TO_HUMAN
from devkit.fake_slack import FakeSlack
from devkit.slack_events import SlackSender, code, message_body, slack_settings
from tests.integration.test_slack_turns import wait_text as says
from tests.support.fake_openai import FakeOpenAI, Text, Tool, fake_llm
from tests.support.restart import chat_controller, llm_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

OPS = "C0OPS"
OPERATOR = "U0OLGA"


@contextmanager
def controller(make_settings: Any, fake: FakeSlack, llm: FakeOpenAI) -> Iterator[SlackSender]:
    """A controller on the test's data dir (each one started anew reads the same local store)."""
    settings = slack_settings(fake, slack_operator_channel=OPS)
    with chat_controller(make_settings, **settings, **llm_settings(llm)) as chat:
        yield SlackSender(chat, chat=chat)


def desk_of(fake: FakeSlack) -> str:
    """The thread the bot opened in the operator channel."""

    def roots() -> list[str]:
        return [m["ts"] for m in list(fake.messages) if m["channel"] == OPS and "thread_ts" not in m]

    return fake.wait_for(roots, 60, "a thread in the operator channel")[0]


def operator_says(slack: SlackSender, desk: str, text: str) -> None:
    body = message_body("message", OPS, text, thread_ts=desk)
    body["event"]["user"] = OPERATOR
    assert slack.deliver(body).status_code == 200


def test_a_person_takes_the_thread_over_a_restart_and_gives_it_back(
    make_settings: Any, fake: FakeSlack
) -> None:
    with fake_llm() as llm:
        with controller(make_settings, fake, llm) as slack:
            root = slack.mention("C1", "human").ts
            says(fake, "C1", root, TO_HUMAN)
            desk = desk_of(fake)
            says(fake, OPS, desk, "yours", "human")
            slack.send("message", "C1", "My invoice is wrong.", thread_ts=root)
            says(fake, OPS, desk, "My invoice is wrong.")
            operator_says(slack, desk, "Hello, Olga here. Let me look.")
            says(fake, "C1", root, "Olga here")

        with controller(make_settings, fake, llm) as slack:  # restarted: the handoff goes on
            slack.send("message", "C1", "Still there?", thread_ts=root)
            says(fake, OPS, desk, "Still there?")
            operator_says(slack, desk, code("total = 6 * 7\nprint('total is', total)"))
            says(fake, "C1", root, "total is 42")
            says(fake, OPS, desk, "total is 42")
            assert llm.requests == []  # the agent said nothing while a person had the thread

            operator_says(slack, desk, "/bot")
            says(fake, "C1", root, TO_BOT)
            llm.add(Text("Glad it is sorted. Anything else?", when="Thanks!"))
            slack.send("message", "C1", "Thanks!", thread_ts=root)
            says(fake, "C1", root, "Anything else?")
    [request] = llm.requests
    told = [str(m.get("content")) for m in request["messages"]]
    assert TO_HUMAN in told and "My invoice is wrong." in told and any("Olga here" in t for t in told)


def test_the_agent_asks_a_human_and_then_stays_silent(make_settings: Any, fake: FakeSlack) -> None:
    with fake_llm() as llm:
        llm.add(
            Tool([("ask_a_human", {"reason": "a refund over the limit"})], when="refund"),
            Text("I have asked a person to help you.", when="take over"),
        )
        with controller(make_settings, fake, llm) as slack:
            root = slack.mention("C2", "I want a refund of 900 euros").ts
            says(fake, "C2", root, "asked a person", TO_HUMAN)
            desk = desk_of(fake)
            says(fake, OPS, desk, "the assistant asked", "a refund over the limit")
            slack.send("message", "C2", "Hello?", thread_ts=root)
            says(fake, OPS, desk, "Hello?")
    assert len(llm.requests) == 2
    assert "ask_a_human" in {t["function"]["name"] for t in llm.requests[0]["tools"]}
