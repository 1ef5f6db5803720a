"""bench.slack_load reads a streamed reply as a reader would, without the code its card echoes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.slack_load import ROOT, STALL, judge, loop_stalls, said
from devkit.fake_slack import visible


def streamed_reply(token: str) -> dict[str, Any]:
    """A reply as the fake Slack keeps a stream: a task card (code and output) and Markdown."""
    card = {"title": "Ran", "details": f"```\nprint({token!r})\n```", "output": f"```\n{token}\n```"}
    chunks = [{"type": "task", "id": "1"}, {"type": "markdown_text", "text": "Done."}]
    return {"text": "", "bot_id": "B1", "chunks": chunks, "tasks": {"1": card}, "blocks": []}


def test_a_streamed_reply_counts_its_output_once_and_not_its_code() -> None:
    reply = streamed_reply("tok-3-0-x")
    assert said(reply).count("tok-3-0-x") == 1 and "Done." in said(reply)
    assert judge(3, 1, 1, [said(reply)]) == judge(3, 1, 1, ["tok-3-0-x"])
    # The control: read with the code, the same reply would count as answered twice.
    assert judge(3, 1, 1, [visible(reply)])["duplicated"] == 1


def test_loop_stalls_are_read_from_json_log_lines_with_their_innermost_frame(tmp_path: Path) -> None:
    ours = f'  File "{ROOT}/controller/k8s/podserver.py", line 68, in _client'
    stack = "\n".join([f"{STALL} 0.51s; it is blocked here:", ours, '  File "/lib/httpx.py", line 1'])
    records = [
        {"level": "warning", "logger": "controller.loopwatch", "message": stack},
        {"level": "error", "message": f"another record\n{ours.replace('_client', 'elsewhere')}"},
    ]
    log = tmp_path / "controller.log"
    log.write_text("threadbox: a plain line first\n" + "\n".join(json.dumps(r) for r in records) + "\n")
    assert loop_stalls(log) == [f"{STALL} 0.51s; it is blocked here: | {ours.strip()}"]
    # The control: the same report as a text log reads the same.
    log.write_text(stack + "\n")
    assert loop_stalls(log) == [f"{STALL} 0.51s; it is blocked here: | {ours.strip()}"]
