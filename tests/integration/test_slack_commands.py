"""The chat commands on Slack, end to end: signed events, real kernels, the fake Slack Web API.
``fork`` opens a new top-level thread in the channel with the original's file and variable,
whose turns leave the original alone; ``forget state`` drops the variable and keeps the file
(tests/support/fork_chat.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from controller.identity import ThreadKey
from devkit.fake_slack import TEAM_ID, FakeSlack
from devkit.slack_events import SlackSender, code
from tests.integration.test_slack_turns import wait_text
from tests.support import fork_chat

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CHANNEL = "C1"
SAID = {"fork": "fork", "forget": "Forget state"}


@dataclass
class SlackChat:
    """Threads are named by their root ts in CHANNEL; replies need no mention (reply_mode all)."""

    slack: SlackSender
    fake: FakeSlack

    def run(self, thread: str, source: str) -> None:
        self.slack.send("message", CHANNEL, code(source), thread_ts=thread)

    def command(self, thread: str, name: Literal["fork", "forget"]) -> None:
        self.slack.send("message", CHANNEL, SAID[name], thread_ts=thread)

    def wait(self, thread: str, *needles: str) -> str:
        return wait_text(self.fake, CHANNEL, thread, *needles)

    def fork_of(self, thread: str) -> tuple[str, str]:
        def opened() -> str | None:
            tops = [m for m in list(self.fake.messages) if m["channel"] == CHANNEL and "thread_ts" not in m]
            return next((m["ts"] for m in tops if m.get("bot_id") and m["ts"] != thread), None)

        ts = self.fake.wait_for(opened, 60, "the fork's top-level message")
        return ts, f"https://fake.slack.com/archives/{CHANNEL}/p{ts.replace('.', '')}"


def test_fork_opens_a_thread_with_the_copy_and_forget_state_keeps_only_the_files(
    slack: SlackSender, fake: FakeSlack
) -> None:
    first = slack.mention(CHANNEL, code(fork_chat.SET_UP))
    wait_text(fake, CHANNEL, first.ts, fork_chat.SET)
    fork = fork_chat.fork_and_forget(SlackChat(slack, fake), first.ts)
    runtime = slack.client.runtime  # type: ignore[attr-defined]
    record = runtime.store.get_json(ThreadKey("slack", TEAM_ID, CHANNEL, fork).id, "meta")
    assert (record["forked_from"], record["user"]) == (
        ThreadKey("slack", TEAM_ID, CHANNEL, first.ts).id,
        "U0ALICE",
    )
