"""A reply whose stream Slack refuses, rendered by the real slack_sdk client against the fake Web API.

The refusal can come after a card was rendered for the refused call; what that rendering cut
must not count once the reply shows the whole transcript by ``chat.update``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from controller.events import Code, Done, Stream
from controller.slack.ratelimit import TokenBucket
from controller.slack.render import Hooks, SlackReply
from controller.slack.stream import Recipient
from controller.stores.local import LocalStore
from devkit.fake_slack import BOT_TOKEN, TEAM_ID, FakeSlack, serve_fake_slack

pytestmark = pytest.mark.integration

LINES = "".join(f"{i:04d} " + "y" * 50 + "\n" for i in range(120))  # more than a card shows


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with serve_fake_slack() as server:
        yield server


async def reply_with_long_output(fake: FakeSlack, tmp: Path) -> SlackReply:
    client = AsyncWebClient(token=BOT_TOKEN, base_url=fake.url)
    refused: list[str] = []
    reply = SlackReply(
        client,
        Recipient("C1", "1.000001", "U0ALICE", TEAM_ID),
        TokenBucket(),
        60.0,
        LocalStore(tmp),
        "thread-1",
        Hooks(lambda: None, refused.append),
        streaming=True,
        stop="thread-1/1.000001",
    )
    await reply.start(sandbox_live=True)
    for event in (Code(code="print(lines)"), Stream(type="stdout", text=LINES), Done(status="ok")):
        await reply.show(event)
    await reply.finish()
    return reply


async def test_a_reply_that_fell_back_shows_all_output_and_attaches_nothing(
    fake: FakeSlack, tmp_path: Path
) -> None:
    fake.refuse_streaming()
    reply = await reply_with_long_output(fake, tmp_path)
    assert not reply.streaming
    texts = [m["text"] for m in fake.messages_in_thread("C1", "1.000001")]
    assert len(texts) == 2 and "0000 " in texts[0] and "0119 " in texts[1]
    assert fake.files_in_thread("C1", "1.000001") == []


async def test_positive_control_a_streamed_card_that_cut_output_attaches_it(
    fake: FakeSlack, tmp_path: Path
) -> None:
    reply = await reply_with_long_output(fake, tmp_path)
    assert reply.streaming
    files = fake.files_in_thread("C1", "1.000001")
    assert [f.name for f in files] == ["output.txt"] and b"0119 " in files[0].content
