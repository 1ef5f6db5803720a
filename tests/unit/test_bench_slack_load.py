"""bench.slack_load reads a streamed reply as a reader would, without the code its card echoes."""

from __future__ import annotations

from typing import Any

from bench.slack_load import judge, said
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
