"""The Open Interpreter engine against real kernels and the fake LLM (needs the ``oi`` extra)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_agent_builtin import ANALYSIS, CSV
from tests.support.agent import chat, done, messages, upload
from tests.support.client import create_thread, errors, stdout
from tests.support.fake_openai import Fail, FakeOpenAI, Text, execute, fake_llm

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("interpreter") is None, reason="needs the oi extra: uv sync --extra oi"
    ),
]


def oi_settings(fake: FakeOpenAI) -> dict[str, Any]:
    return {"agent": "open-interpreter", "llm_base_url": fake.base_url, "llm_api_key": "test"}


def test_open_interpreter_answers_a_csv_question(api: Any) -> None:
    with fake_llm() as fake:
        client = api(**oi_settings(fake))
        thread = create_thread(client, "oi-csv")
        upload(client, thread, "sales.csv", CSV)
        fake.add(
            execute(ANALYSIS, when="total"),
            Text("The total amount is 300.0.", when="total amount: 300.0"),
        )
        events = chat(client, thread, "What is the total amount in sales.csv? Plot it by month.")

    assert done(events)["status"] == "ok", events
    assert "total amount: 300.0" in stdout(events)
    assert any("image/png" in e["data"] for e in events if e["type"] == "display")
    assert messages(events) == ["The total amount is 300.0."]
    assert fake.requests[0]["model"].endswith("gpt-4o-mini")
    assert "sales.csv" in fake.requests[0]["messages"][0]["content"]
    assert fake.requests[0]["tools"][0]["function"]["parameters"]["properties"]["language"]["enum"] == [
        "python"
    ]
    # The figure reached the user as an event; OI and the model only saw "[image]".
    assert "[image]" in json.dumps(fake.requests[1]["messages"])
    stored = json.dumps(client.runtime.store.list_json(thread, "oi_history"))
    assert "total amount: 300.0" in stored and "iVBOR" not in stored
    sample = client.runtime.metrics.registry.get_sample_value
    assert sample("threadbox_llm_requests_total", {"result": "ok"}) == 2
    assert sample("threadbox_llm_tokens_total", {"type": "completion"}) >= 2  # as the model reported


def test_shell_blocks_never_run_on_the_controller_host(api: Any, tmp_path: Path) -> None:
    marker = tmp_path / "ran-on-host"
    with fake_llm() as fake:
        client = api(**oi_settings(fake))
        thread = create_thread(client, "oi-shell")
        fake.add(
            execute(f"touch {marker}", language="shell"),
            execute(f"touch {marker}; echo bash", language="bash", when="not supported"),
            Text("Shell is not available here.", when="not supported"),
        )
        events = chat(client, thread, "Create the marker file with a shell command.")
        # Below OI's own check, the terminal refuses too, before OI's local `apt install` shortcut.
        computer = client.runtime.agent._instances[thread].oi.computer
        for language, code in [("shell", f"touch {marker}"), ("shell", "apt install threadbox-no-such-pkg")]:
            assert "cannot run here" in computer.run(language, code)[0]["content"]

    assert not marker.exists()
    assert done(events)["status"] == "ok"
    assert messages(events) == ["Shell is not available here."]
    assert not [e for e in events if e["type"] in ("stdout", "stderr", "display")]
    refusals = [m for m in fake.requests[-1]["messages"] if m["role"] == "tool"]
    assert len(refusals) == 2 and all("not supported" in m["content"] for m in refusals)


def test_open_interpreter_llm_errors_end_the_turn_clearly(api: Any) -> None:
    with fake_llm() as fake:
        client = api(**oi_settings(fake))
        thread = create_thread(client, "oi-errors")
        fake.add(Fail(500, message="upstream exploded"))
        events = chat(client, thread, "hello")
    assert [(e["ename"], "HTTP 500" in e["evalue"]) for e in errors(events)] == [("LLMRequestFailed", True)]
    assert done(events)["status"] == "error"
    assert len(fake.requests) == 1  # no hidden whole-stream retries
    sample = client.runtime.metrics.registry.get_sample_value
    assert sample("threadbox_llm_requests_total", {"result": "request_failed"}) == 1


def test_open_interpreter_stops_at_max_steps(api: Any) -> None:
    with fake_llm() as fake:
        client = api(**oi_settings(fake), agent_max_steps=1)
        thread = create_thread(client, "oi-steps")
        fake.add(execute("print('one')"), execute("print('two')", when="one"))
        events = chat(client, thread, "count")
        fake.add(Text("ok", when="go on"))  # the next turn still sends a valid conversation
        chat(client, thread, "go on")
    assert stdout(events) == "one\n"
    assert "limit of 1 code runs" in messages(events)[-1]
    assert done(events)["status"] == "ok"
