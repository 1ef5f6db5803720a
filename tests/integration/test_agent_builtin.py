"""The built-in agent end to end: HTTP API -> agent -> real openai SDK -> fake LLM, real kernels."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.agent.base import AgentConfig, Turn
from controller.agent.builtin import BuiltinAgent
from controller.events import Done, Error
from controller.runtime import build_runtime
from tests.support.agent import chat, done, messages, upload
from tests.support.client import create_thread, errors, stdout
from tests.support.fake_openai import Fail, FakeOpenAI, Stall, Text, fake_llm, run_python

pytestmark = pytest.mark.integration

CSV = b"month,amount\njan,120.5\nfeb,80.25\nmar,99.25\n"
ANALYSIS = """\
import pandas as pd
import matplotlib.pyplot as plt
df = pd.read_csv("sales.csv")
print("total amount:", df["amount"].sum())
df.plot(x="month", y="amount")
plt.show()
"""


def llm_settings(fake: FakeOpenAI, **more: Any) -> dict[str, Any]:
    return {"agent": "builtin", "llm_base_url": fake.base_url, "llm_api_key": "test", **more}


def tool_results(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


def test_answers_a_csv_question_with_code_output_and_a_plot(api: Any) -> None:
    with fake_llm() as fake:
        client = api(**llm_settings(fake))
        thread = create_thread(client, "csv")
        upload(client, thread, "sales.csv", CSV)
        fake.add(
            run_python(ANALYSIS, when="total"),
            Text("The total amount is **300.0**; the chart shows it by month.", when="total amount: 300.0"),
        )
        events = chat(client, thread, "What is the total amount in sales.csv? Plot it by month.")

    assert done(events)["status"] == "ok", events
    assert "total amount: 300.0" in stdout(events)
    assert any("image/png" in e["data"] for e in events if e["type"] == "display")
    assert messages(events)[-1].startswith("The total amount is **300.0**")
    system = fake.requests[0]["messages"][0]
    assert system["role"] == "system"
    assert "sales.csv" in system["content"] and "pandas" in system["content"]
    assert fake.requests[0]["tools"][0]["function"]["name"] == "run_python"
    assert all(r["stream"] for r in fake.requests)
    # The model reads a summary: the figure is "[image]", never its base64.
    [result] = tool_results(fake.requests[1])
    assert "total amount: 300.0" in result and "[image]" in result and "iVBOR" not in result
    stored = json.dumps(client.runtime.store.list_json(thread, "history"))
    assert "total amount: 300.0" in stored and "iVBOR" not in stored


def test_history_persists_across_turns_and_restarts_and_is_trimmed(api: Any) -> None:
    with fake_llm() as fake:
        first = api(**llm_settings(fake, history_token_budget=500))
        thread = create_thread(first, "history")
        fake.add(Text("Nice to meet you, Ada."))
        chat(first, thread, "My name is Ada.")
        fake.add(Text("Your name is Ada.", when="my name"))
        assert messages(chat(first, thread, "What is my name?")) == ["Your name is Ada."]
        sent = [m["content"] for m in fake.requests[1]["messages"][1:]]
        assert sent == ["My name is Ada.", "Nice to meet you, Ada.", "What is my name?"]

        restarted = api(**llm_settings(fake, history_token_budget=500))  # same data dir, new runtime
        fake.add(Text("Still Ada."), Text("Noted."))
        chat(restarted, thread, "And now?")
        assert "Nice to meet you, Ada." in json.dumps(fake.requests[2]["messages"])
        chat(restarted, thread, "padding " * 400)  # ~800 tokens: the budget of 500 drops everything older

        fake.add(Text("Hello again."))
        chat(restarted, thread, "Hi")
    last = json.dumps(fake.requests[-1]["messages"])
    assert "Ada" not in last and "padding" not in last
    assert [m["role"] for m in fake.requests[-1]["messages"]] == ["system", "user"]


def test_stops_at_max_steps_and_keeps_history_valid(api: Any) -> None:
    with fake_llm() as fake:
        client = api(**llm_settings(fake, agent_max_steps=2))
        thread = create_thread(client, "steps")
        fake.add(run_python("print('one')"), run_python("print('two')", "print('three')"))
        events = chat(client, thread, "count")
        # The refused call still gets a result, so the next request is valid (the fake checks).
        fake.add(Text("ok", when="go on"))
        chat(client, thread, "go on")

    assert stdout(events) == "one\ntwo\n"
    assert "limit of 2 code runs" in messages(events)[-1]
    assert done(events)["status"] == "ok"
    assert any("limit of 2" in r for r in tool_results(fake.requests[-1]))


@pytest.mark.parametrize(
    ("failure", "ename", "requests"),
    [
        (Fail(429, retry_after=0.1, message="slow down"), "LLMRateLimited", 3),
        (Fail(500, message="upstream exploded"), "LLMRequestFailed", 3),
        (Fail(401, message="bad key"), "LLMAuthFailed", 1),
    ],
)
def test_llm_errors_end_the_turn_clearly(api: Any, failure: Fail, ename: str, requests: int) -> None:
    with fake_llm() as fake:
        client = api(**llm_settings(fake))
        thread = create_thread(client, "errors")
        fake.add(*[failure] * requests)  # the SDK retries 429 and 5xx twice, never 401
        events = chat(client, thread, "hello")
    assert [e["ename"] for e in errors(events)] == [ename]
    assert done(events)["status"] == "error"
    assert len(fake.requests) == requests
    if failure.status == 500:
        assert "HTTP 500" in errors(events)[0]["evalue"]


async def test_a_stalled_llm_times_out_instead_of_hanging(make_settings: Any) -> None:
    with fake_llm() as fake:
        runtime = build_runtime(make_settings(**llm_settings(fake)))
        agent = BuiltinAgent(
            AgentConfig.from_settings(runtime.settings), runtime.manager, runtime.store, timeout=0.5
        )
        fake.add(*[Stall(30)] * 3)
        events = [e async for e in agent.respond(Turn("t" * 32, "hello"))]
    assert [(e.kind, e.ename) for e in events if isinstance(e, Error)] == [("timeout", "LLMTimeout")]
    assert isinstance(events[-1], Done) and events[-1].status == "error"
