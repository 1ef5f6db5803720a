"""The controller's logs during real turns: JSON lines that carry the turn's thread id, turn id
and front-end, and never a token or key, not even at debug level."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from controller.logsetup import HANDLER_NAME, configure
from devkit.client import ADMIN_TOKEN
from tests.support.client import create_thread, run

LLM_KEY = "sk-test-llm-key-that-must-never-be-logged"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)
    root.setLevel(level)


def test_a_turns_log_lines_say_which_turn_and_carry_no_secret(
    api: Any, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    client = api(llm_api_key=LLM_KEY, log_level="debug")
    configure(client.runtime.settings, "json")
    capsys.readouterr()  # only what the turns log
    thread = create_thread(client, "logs")
    for code in ("print('ok')", "1/0"):
        assert run(client, thread, code)[-1]["type"] == "done"
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    turn_lines = [line for line in lines if "turn_id" in line]
    assert len({line["turn_id"] for line in turn_lines}) == 2, err
    assert {(line["thread_id"], line["frontend"]) for line in turn_lines} == {(thread, "api")}
    assert ADMIN_TOKEN not in err and LLM_KEY not in err
