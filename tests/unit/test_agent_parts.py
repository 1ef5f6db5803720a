"""Agent selection, the system prompt and the bounded execution summary the model reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from controller.agent.outputs import ExecutionSummary, clip
from controller.agent.prompt import preinstalled_libraries, system_prompt
from controller.agent.select import agent_kind
from controller.config import Settings
from controller.events import Display, Done, Error, Event, FilesChanged, Stream
from controller.runtime import build_runtime
from controller.stores.base import StoredFile


@pytest.mark.parametrize(
    ("settings", "kind"),
    [
        ({}, "direct"),
        ({"llm_api_key": "sk-x"}, "builtin"),
        ({"llm_base_url": "http://127.0.0.1:1/v1"}, "builtin"),
        ({"agent": "direct", "llm_api_key": "sk-x"}, "direct"),
        ({"agent": "builtin"}, "builtin"),
    ],
)
def test_auto_picks_builtin_only_when_an_llm_is_configured(settings: dict[str, Any], kind: str) -> None:
    assert agent_kind(Settings(**settings)) == kind


def test_runtime_builds_the_selected_agent(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, sandbox_python=tmp_path / "python", llm_api_key=SecretStr("sk-x"))
    assert build_runtime(settings).agent.name == "builtin"


def test_libraries_come_from_the_sandbox_requirements() -> None:
    libraries = preinstalled_libraries()
    assert {"pandas", "matplotlib", "scikit-learn", "ipykernel"} <= set(libraries)
    assert not any(c in name for name in libraries for c in "<>=# ")


def test_system_prompt_names_tool_libraries_files_and_attachments() -> None:
    files = [StoredFile("data/sales.csv", 120, "0" * 64, 0.0)]
    prompt = system_prompt(files, ["sales.csv"], "run_python")
    assert "`run_python`" in prompt and "pandas" in prompt
    assert "- data/sales.csv (120 bytes)" in prompt
    assert "attached to this message: sales.csv" in prompt
    assert "working directory is empty" in system_prompt([], [], "run_python")


def test_summary_is_bounded_and_hides_images() -> None:
    summary = ExecutionSummary()
    events: list[Event] = [
        Stream(type="stdout", text="x" * 50_000),
        Stream(type="stderr", text="warning\n"),
        Display(data={"image/png": "iVBORw0KGgo" * 1000, "text/plain": "<Figure>"}),
        Display(data={"text/plain": "42"}, is_result=True),
        Error(
            kind="exception", ename="ValueError", evalue="bad", traceback=[f"line {i}" for i in range(100)]
        ),
        FilesChanged(changed=["out.csv"]),
        Done(status="error"),
    ]
    for event in events:
        summary.add(event)
    text = summary.text()
    assert len(text) < 10_000 and "characters cut" in text
    assert "[image]" in text and "iVBOR" not in text
    assert "42" in text and "warning" in text and "files saved: out.csv" in text
    assert "ValueError: bad" in text and "line 99" in text and "line 50" not in text
    assert ExecutionSummary().text() == "(no output)"


def test_clip_keeps_head_and_tail() -> None:
    clipped = clip("a" * 100 + "b" * 100, 50)
    assert clipped.startswith("a" * 25) and clipped.endswith("b" * 25)
    assert clip("short", 50) == "short"
