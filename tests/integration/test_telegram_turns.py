"""Telegram turns end to end: webhook updates over real HTTP, real kernels, python-telegram-bot
against the local Bot API stand-in (devkit/fake_telegram.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import pytest

from controller.identity import ThreadKey
from devkit.fake_telegram import BOT_ID, FakeTelegram, serve_fake_telegram
from devkit.telegram_updates import TelegramSender, telegram_settings
from tests.support import fork_chat
from tests.support.fake_openai import Text, fake_llm, run_python

pytestmark = pytest.mark.integration

GROUP = -1001234
FORUM = -1005678
PRIVATE = 4242


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with serve_fake_telegram() as fake:
        yield fake


@pytest.fixture
def sender(api: Any, tg: FakeTelegram) -> TelegramSender:
    return TelegramSender(api(**telegram_settings(tg)))


def wait_text(tg: FakeTelegram, chat: int, root: int, *needles: str, timeout: float = 90) -> str:
    def found() -> str | None:
        text = tg.text_in(chat, root)
        return text if all(n in text for n in needles) else None

    return tg.wait_for(found, timeout, f"{needles} in {chat}/{root}")


def updates(sender: TelegramSender, outcome: str) -> float:
    runtime = sender.client.runtime  # type: ignore[attr-defined]
    value = runtime.metrics.registry.get_sample_value(
        "threadbox_telegram_updates_total", {"outcome": outcome}
    )
    return float(value or 0)


def test_a_mention_runs_code_in_its_reply_chain_and_a_reply_continues_it(
    sender: TelegramSender, tg: FakeTelegram
) -> None:
    first = tg.user_says(GROUP, "run this", mention=True, code="x = 41\nprint('x is', x)")
    assert sender.deliver(first).status_code == 200
    unasked = tg.user_says(GROUP, "nobody asked", code="print('no')")
    assert sender.deliver(unasked).status_code == 200
    root = first["message"]["message_id"]
    wait_text(tg, GROUP, root, "x is 41")

    bot_reply = tg.bot_messages(GROUP, root)[-1]["message_id"]
    follow_up = tg.user_says(GROUP, code="print('plus one', x + 1)", reply_to=bot_reply)
    sender.deliver(follow_up)
    wait_text(tg, GROUP, root, "plus one 42")
    assert tg.bot_messages(GROUP, unasked["message"]["message_id"]) == []
    runtime = sender.client.runtime  # type: ignore[attr-defined]
    thread_id = ThreadKey("telegram", str(BOT_ID), str(GROUP), f"msg-{root}").id
    assert runtime.store.list_threads() == [thread_id]


def test_a_csv_question_through_the_llm_agent_answers_with_the_plot_in_its_thread(
    api: Any, tg: FakeTelegram
) -> None:
    analysis = (
        "import pandas as pd\nimport matplotlib.pyplot as plt\ndf = pd.read_csv('sales.csv')\n"
        "print('total amount:', df['amount'].sum())\ndf.plot(x='month', y='amount')\nplt.show()\n"
    )
    with fake_llm() as llm:
        llm.add(
            run_python(analysis, when="total"),
            Text("The total amount is 300.0; the chart shows it by month.", when="total amount: 300.0"),
        )
        llm_settings = {"agent": "builtin", "llm_base_url": llm.base_url, "llm_api_key": "test"}
        sender = TelegramSender(api(**telegram_settings(tg, **llm_settings)))
        csv = tg.add_file("sales.csv", b"month,amount\njan,120.5\nfeb,80.25\nmar,99.25\n")
        asked = tg.user_says(
            PRIVATE, "What is the total amount? Plot it by month.", command="new", document=csv
        )
        sender.deliver(asked)
        root = asked["message"]["message_id"]
        wait_text(tg, PRIVATE, root, "total amount: 300.0", "The total amount is 300.0")
        photos = tg.wait_for(lambda: tg.files_in(PRIVATE, root), 30, "the figure")
    assert [(p.kind, p.filename) for p in photos] == [("photo", "figure-1.png")]
    assert photos[0].content.startswith(b"\x89PNG")
    assert {d["draft_id"] for d in tg.drafts} == {root}  # streamed as a draft, then sent
    assert "sales.csv" in json.dumps(llm.requests[0])
    runtime = sender.client.runtime  # type: ignore[attr-defined]
    thread_id = ThreadKey("telegram", str(BOT_ID), str(PRIVATE), f"msg-{root}").id
    assert runtime.store.read_file(thread_id, "sales.csv").startswith(b"month,amount")


def test_ten_topics_at_once_each_get_their_own_results(sender: TelegramSender, tg: FakeTelegram) -> None:
    tg.forums.add(FORUM)

    def start(i: int) -> Any:
        update = tg.user_says(
            FORUM, code=f"tag = 'topic-{i}'\nprint(tag, {i} * 1111)", mention=True, topic=100 + i
        )
        return sender.deliver(update)

    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(start, range(10)))
    assert all(r.status_code == 200 for r in responses)
    for i in range(10):

        def mine(i: int = i) -> str | None:
            text = tg.text_in(FORUM, topic=100 + i)
            return text if f"topic-{i} {i * 1111}" in text else None

        text = tg.wait_for(mine, 150, f"topic {i}")
        assert not any(f"topic-{j} " in text for j in range(10) if j != i), text
    assert {m.get("message_thread_id") for m in tg.messages if m["from"]["is_bot"]} == set(range(100, 110))


def test_a_redelivered_update_runs_once(sender: TelegramSender, tg: FakeTelegram) -> None:
    update = tg.user_says(GROUP, "count", mention=True, code="print('ran', 'once')")
    with ThreadPoolExecutor(3) as pool:
        assert [r.status_code for r in pool.map(sender.deliver, [update] * 3)] == [200] * 3
    root = update["message"]["message_id"]
    wait_text(tg, GROUP, root, "ran once")
    assert sender.deliver(update).status_code == 200  # Telegram's retry after the turn
    # Turns of a thread run in order: once the next one answers, a second run would have too.
    later = tg.user_says(GROUP, code="print('next', 'turn')", reply_to=root)
    sender.deliver(later)
    text = wait_text(tg, GROUP, root, "next turn")
    assert text.count("ran once") == 1
    assert (updates(sender, "answered"), updates(sender, "duplicate")) == (2, 3)


def test_a_forged_or_malformed_request_is_refused_and_nothing_runs(
    sender: TelegramSender, tg: FakeTelegram
) -> None:
    update = tg.user_says(GROUP, "forged", mention=True, code="print('should not run')")
    assert sender.deliver(update, secret="wrong-secret").status_code == 401
    assert TelegramSender(sender.client, secret=None).deliver(update).status_code == 401
    assert sender.post_raw(b"{not json").status_code == 400
    assert sender.post_raw(b'{"update_id": "1"}').status_code == 400
    assert sender.post_raw(b"[]").status_code == 400
    assert sender.post_raw(b"{" + b" " * (2 << 20) + b"}").status_code == 413
    runtime = sender.client.runtime  # type: ignore[attr-defined]
    assert runtime.store.list_threads() == []
    assert [c.method for c in tg.calls] == ["getMe"]
    assert (updates(sender, "rejected"), updates(sender, "answered")) == (5, 0)  # the 413 is the body limit's


def test_an_oversize_or_over_quota_attachment_gets_a_sentence_and_nothing_is_written(
    api: Any, tg: FakeTelegram
) -> None:
    sender = TelegramSender(api(**telegram_settings(tg, max_file_bytes=1000, user_max_bytes=1500)))
    big = tg.add_file("big.csv", b"x" * 1001)
    first = tg.user_says(GROUP, "take it", mention=True, code="print('asked')", document=big)
    sender.deliver(first)
    text = wait_text(tg, GROUP, first["message"]["message_id"], "asked", "I could not take `big.csv`")
    assert "over the 0.0 MiB limit for one file" in text
    assert tg.calls_of("getFile") == []  # refused on Telegram's declared size, before any download

    kept = tg.user_says(GROUP, mention=True, code="print('kept')", document=tg.add_file("a.csv", b"y" * 900))
    sender.deliver(kept)
    wait_text(tg, GROUP, kept["message"]["message_id"], "kept")
    over = tg.user_says(GROUP, mention=True, code="print('over')", document=tg.add_file("b.csv", b"z" * 900))
    sender.deliver(over)
    text = wait_text(tg, GROUP, over["message"]["message_id"], "over", "I could not take `b.csv`")
    assert "your files would total" in text
    runtime = sender.client.runtime  # type: ignore[attr-defined]
    stored = {tid: [f.name for f in runtime.store.list_files(tid)] for tid in runtime.store.list_threads()}
    assert sorted(stored.values()) == [[], [], ["a.csv"]]


def test_long_polling_picks_up_an_update(api: Any, tg: FakeTelegram) -> None:
    client = api(**telegram_settings(tg, telegram_mode="polling", telegram_webhook_secret=None))
    update = tg.user_says(GROUP, mention=True, code="print('polled', 6 * 7)")
    tg.queue(update)
    wait_text(tg, GROUP, update["message"]["message_id"], "polled 42")
    assert client.chat.post("/telegram/webhook", json=update).status_code == 404  # no webhook route
    offsets = [c.params.get("offset") for c in tg.calls_of("getUpdates")]
    assert update["update_id"] + 1 in offsets  # the update is confirmed, so Telegram drops it


def test_where_drafts_are_refused_the_reply_streams_by_edits(
    sender: TelegramSender, tg: FakeTelegram
) -> None:
    tg.refuse_drafts()
    update = tg.user_says(PRIVATE, code="import time\nprint('first')\ntime.sleep(1.5)\nprint('second')")
    sender.deliver(update)
    wait_text(tg, PRIVATE, update["message"]["message_id"], "first", "second")
    assert tg.calls_of("sendMessageDraft") and tg.drafts == []
    assert tg.calls_of("editMessageText")


def test_flood_control_is_waited_out_and_the_reply_lands(sender: TelegramSender, tg: FakeTelegram) -> None:
    tg.rate_limit("sendMessage", times=1, retry_after=1)
    tg.rate_limit("editMessageText", times=1, retry_after=1)
    update = tg.user_says(
        GROUP, mention=True, code="import time\nprint('one')\ntime.sleep(1)\nprint('two', 6 * 7)"
    )
    sender.deliver(update)
    wait_text(tg, GROUP, update["message"]["message_id"], "one", "two 42")
    assert [c.status for c in tg.calls_of("sendMessage")][:2] == [429, 200]
    assert [c.status for c in tg.calls_of("editMessageText")][:2] == [429, 200]


class Place(TypedDict, total=False):
    """Where a message goes in the chat: the keyword arguments of FakeTelegram.user_says."""

    topic: int
    reply_to: int


@dataclass
class TelegramChat:
    """Threads are forum topics in a forum, else reply chains named by their first message
    (tests/support/fork_chat.py); a message continues one by replying to its first message."""

    sender: TelegramSender
    tg: FakeTelegram
    chat: int
    topics: bool

    def _place(self, thread: int) -> Place:
        return {"topic": thread} if self.topics else {"reply_to": thread}

    def run(self, thread: int, code: str) -> None:
        self.sender.deliver(self.tg.user_says(self.chat, code=code, **self._place(thread)))

    def command(self, thread: int, name: Literal["fork", "forget"]) -> None:
        self.sender.deliver(self.tg.user_says(self.chat, command=name, **self._place(thread)))

    def wait(self, thread: int, *needles: str) -> str:
        def found() -> str | None:
            text = (
                self.tg.text_in(self.chat, topic=thread)
                if self.topics
                else self.tg.text_in(self.chat, thread)
            )
            return text if all(n in text for n in needles) else None

        return self.tg.wait_for(found, 90, f"{needles} in {self.chat}/{thread}")

    def fork_of(self, thread: int) -> tuple[int, str]:
        def opened() -> int | None:
            bots = [m for m in list(self.tg.messages) if m["chat"]["id"] == self.chat and m["from"]["is_bot"]]
            if self.topics:
                return next((m["message_thread_id"] for m in bots if "forum_topic_created" in m), None)
            tops = [m for m in bots if "reply_to_message" not in m and "is a fork of" in m.get("text", "")]
            return tops[0]["message_id"] if tops else None

        fork = self.tg.wait_for(opened, 60, "the fork's thread")
        return fork, f"https://t.me/c/{str(self.chat)[4:]}/{fork}"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("topics", [False, True], ids=["reply-chains", "forum-topics"])
def test_fork_opens_a_thread_with_the_copy_and_forget_keeps_only_the_files(
    sender: TelegramSender, tg: FakeTelegram, topics: bool
) -> None:
    chat = FORUM if topics else GROUP
    if topics:
        tg.forums.add(FORUM)
    first = tg.user_says(chat, mention=True, code=fork_chat.SET_UP, topic=100 if topics else None)
    sender.deliver(first)
    original = 100 if topics else first["message"]["message_id"]
    telegram = TelegramChat(sender, tg, chat, topics)
    telegram.wait(original, fork_chat.SET)
    fork = fork_chat.fork_and_forget(telegram, original)
    runtime = sender.client.runtime  # type: ignore[attr-defined]
    kind = "topic" if topics else "msg"
    record = runtime.store.get_json(
        ThreadKey("telegram", str(BOT_ID), str(chat), f"{kind}-{fork}").id, "meta"
    )
    assert record["forked_from"] == ThreadKey("telegram", str(BOT_ID), str(chat), f"{kind}-{original}").id
