"""Discord turns end to end: signed interactions over real HTTP to the chat port, real
kernels, and the real hikari REST client calling the stand-in Discord REST API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, cast

import pytest
from nacl.signing import SigningKey

from controller.cli import main
from devkit.discord_interactions import DiscordSender, Sent, command_body, discord_settings, sign
from devkit.fake_discord import UPLOAD_LIMIT, FakeDiscord, serve_fake_discord
from tests.support import csv_question, fork_chat
from tests.support.fake_openai import fake_llm

pytestmark = pytest.mark.integration


@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    with serve_fake_discord() as server:
        yield server


@pytest.fixture
def discord(fake: FakeDiscord, api: Any) -> DiscordSender:
    """The fake is set up first, so it outlives the app's shutdown (which drains turns)."""
    return DiscordSender(api(**discord_settings(fake)), fake)


def thread_of(fake: FakeDiscord, sent: Sent) -> str:
    """The thread the command opened: Discord gives it the id of its response message."""
    found = fake.wait_for(lambda: fake.threads_of(sent.channel), 30, f"a thread in {sent.channel}")
    original: str = fake.interactions[sent.body["token"]]["original"]
    assert [t["id"] for t in found] == [original]
    return original


def wait_text(fake: FakeDiscord, channel: str, *needles: str, timeout: float = 90) -> str:
    def says() -> str | None:
        text = fake.text_in(channel)
        return text if all(n in text for n in needles) else None

    try:
        return fake.wait_for(says, timeout, f"{needles} in {channel}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nthe channel says:\n{fake.text_in(channel)}") from None


def interactions(discord: DiscordSender, outcome: str) -> float:
    sample = discord.client.runtime.metrics.registry.get_sample_value  # type: ignore[attr-defined]
    return sample("threadbox_discord_interactions_total", {"outcome": outcome}) or 0.0


def thread_ids(discord: DiscordSender) -> list[str]:
    return discord.client.runtime.store.list_threads()  # type: ignore[attr-defined,no-any-return]


def test_run_opens_a_thread_and_a_run_in_it_continues_the_sandbox(
    discord: DiscordSender, fake: FakeDiscord
) -> None:
    channel = fake.text_channel()
    first = discord.run("x = 41\nprint('x is', x)", channel)
    assert first.response.status_code == 200 and first.response.json() == {"type": 5}
    thread = thread_of(fake, first)
    wait_text(fake, thread, "x is 41")
    assert "**/run** from <@" in fake.messages_in(channel["id"])[0]["content"]

    follow_up = discord.run("print('x plus one is', x + 1)", fake.channels[thread])
    assert follow_up.response.status_code == 200
    wait_text(fake, thread, "x plus one is 42")
    assert len(fake.threads_of(channel["id"])) == 1  # a command in the thread opens none
    [thread_id] = thread_ids(discord)
    runtime = discord.client.runtime  # type: ignore[attr-defined]
    assert runtime.store.get_json(thread_id, "meta")["thread"] == thread
    assert all(
        c.headers["authorization"] == "Bot fake-discord-bot-token" for c in fake.calls_of("create_message")
    )


def test_a_csv_question_through_the_llm_agent(fake: FakeDiscord, api: Any) -> None:
    with fake_llm() as llm:
        discord = DiscordSender(api(**discord_settings(fake, **csv_question.script(llm))), fake)
        file = fake.add_attachment("sales.csv", csv_question.SALES_CSV)
        other = discord.run("print('another thread')", fake.text_channel())
        sent = discord.ask(csv_question.QUESTION, fake.text_channel(), file)
        thread = thread_of(fake, sent)
        wait_text(fake, thread, csv_question.OUTPUT, csv_question.ANSWER, "Files from this turn")
    [posted] = [m for m in fake.messages_in(thread) if m["attachments"]]
    assert posted["content"] == "📎 Files from this turn: `figure-1.png`"
    assert [f.content[:4] for f in fake.files_in(thread)] == [b"\x89PNG"]
    assert "sales.csv" in json.dumps(llm.requests[0])
    runtime = discord.client.runtime  # type: ignore[attr-defined]
    thread_id = next(t for t in thread_ids(discord) if runtime.store.get_json(t, "meta")["thread"] == thread)
    assert runtime.store.read_file(thread_id, "sales.csv") == csv_question.SALES_CSV
    other_thread = thread_of(fake, other)
    wait_text(fake, other_thread, "another thread")
    assert "total amount" not in fake.text_in(other_thread) and "another thread" not in fake.text_in(thread)


def test_ten_threads_at_once_each_get_their_own_results(discord: DiscordSender, fake: FakeDiscord) -> None:
    channel = fake.text_channel()

    def start(i: int) -> Sent:
        return discord.run(f"tag = 'thread-{i}'\nsecret = {i} * 1111\nprint(tag, secret)", channel)

    with ThreadPoolExecutor(10) as pool:
        sent = list(pool.map(start, range(10)))
    assert all(s.response.json() == {"type": 5} for s in sent)
    assert max(s.response.elapsed.total_seconds() for s in sent) < 3  # Discord's deadline

    for i, s in enumerate(sent):
        thread = fake.interactions[s.body["token"]]["original"]
        text = wait_text(fake, thread, f"thread-{i} {i * 1111}", timeout=150)
        assert not any(f"thread-{j} " in text for j in range(10) if j != i), text
    assert len(fake.threads_of(channel["id"])) == 10
    assert len(thread_ids(discord)) == 10


def test_a_duplicated_interaction_runs_once(discord: DiscordSender, fake: FakeDiscord) -> None:
    channel = fake.text_channel()
    body = command_body(
        fake, "run", "open('runs.txt', 'a').write('ran ')\nprint(open('runs.txt').read())", channel
    )
    answers = [discord.deliver(body) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    thread = thread_of(fake, Sent(body, answers[0]))
    wait_text(fake, thread, "ran")
    fake.wait_for(lambda: thread_ids(discord), 30, "the thread record")
    [thread_id] = thread_ids(discord)
    runtime = discord.client.runtime  # type: ignore[attr-defined]
    fake.wait_for(lambda: runtime.store.list_files(thread_id), 30, "runs.txt persisted")
    assert runtime.store.read_file(thread_id, "runs.txt") == b"ran "
    # An edit can reach Discord before the deferred answer it edits (404, retried): count what
    # Discord took. Once, and one thread: the redeliveries ran nothing.
    edits = [c for c in fake.calls_of("edit_original") if c.status == 200]
    assert len(edits) == 1 and len(fake.calls_of("message_thread")) == 1
    assert [interactions(discord, o) for o in ("answered", "duplicate")] == [1, 2]


def test_forged_stale_and_malformed_requests_are_refused_and_run_nothing(
    discord: DiscordSender, fake: FakeDiscord
) -> None:
    raw = json.dumps(command_body(fake, "run", "print('forged')", fake.text_channel())).encode()
    stamp = str(int(time.time()))
    forged = discord.post_raw(raw, signature=sign(raw, stamp, SigningKey(bytes(32))), timestamp=int(stamp))
    unsigned = discord.chat.post(
        "/discord/interactions", content=raw, headers={"Content-Type": "application/json"}
    )
    stale = discord.post_raw(raw, timestamp=int(time.time()) - 3600)
    tampered = discord.post_raw(raw, signature=sign(raw + b" ", stamp), timestamp=int(stamp))
    assert [r.status_code for r in (forged, unsigned, stale, tampered)] == [401] * 4
    assert "signature" in forged.json()["detail"]

    assert discord.post_raw(b"{not json").status_code == 400
    assert discord.post_raw(b"\xff\xfe").status_code == 400
    assert discord.post_raw(b"[1]").status_code == 400
    assert discord.post_raw(b'{"type": 2, "data": {"name": "run"}}').status_code == 400
    assert discord.post_raw(b"{" + b" " * (2 << 20) + b"}").status_code == 413
    assert discord.post_raw(b'{"type": 1}').json() == {"type": 1}  # PING -> PONG

    runtime = discord.client.runtime  # type: ignore[attr-defined]
    assert fake.calls == [] and runtime.store.list_threads() == []
    assert [interactions(discord, o) for o in ("rejected", "ping", "answered")] == [8, 1, 0]


def test_oversize_and_over_quota_attachments_get_a_sentence_and_nothing_is_written(
    fake: FakeDiscord, api: Any
) -> None:
    discord = DiscordSender(api(**discord_settings(fake, max_file_bytes=1000, user_max_bytes=1500)), fake)
    big = discord.run("print('ran anyway')", fake.text_channel(), fake.add_attachment("big.csv", b"x" * 2000))
    first = discord.run("print('first fits')", fake.text_channel(), fake.add_attachment("a.csv", b"a" * 800))
    big_thread, first_thread = thread_of(fake, big), thread_of(fake, first)
    wait_text(fake, big_thread, "I could not take `big.csv`", "ran anyway")
    wait_text(fake, first_thread, "first fits")
    second = discord.run("print('second ran')", fake.text_channel(), fake.add_attachment("b.csv", b"b" * 800))
    wait_text(fake, thread_of(fake, second), "I could not take `b.csv`", "second ran")

    runtime = discord.client.runtime  # type: ignore[attr-defined]
    stored = {name for t in thread_ids(discord) for name in (f.name for f in runtime.store.list_files(t))}
    assert stored == {"a.csv"}
    assert [c.path.rsplit("/", 1)[-1] for c in fake.calls_of("download")] == ["a.csv"]  # refused unread


def test_rate_limits_are_waited_out_and_large_files_stay_in_the_thread(
    discord: DiscordSender, fake: FakeDiscord
) -> None:
    fake.rate_limit("create_message", times=1, retry_after=0.5)
    fake.rate_limit("edit_message", times=1, retry_after=0.5)
    source = (
        f"open('big.bin', 'wb').write(b'0' * {UPLOAD_LIMIT + 1})\nopen('small.txt', 'w').write('hi')\n"
        "import time\nprint('posted')\ntime.sleep(1)\nprint('through', 6 * 7)"
    )
    thread = thread_of(fake, discord.run(source, fake.text_channel()))
    text = wait_text(fake, thread, "through 42", "`small.txt`")
    assert "`big.bin` (10.0 MiB) is too big to post here; it is saved in the thread's files" in text
    assert [f.filename for f in fake.files_in(thread)] == ["small.txt"]
    assert [c.status for c in fake.calls_of("create_message")][:2] == [429, 200]
    assert [c.status for c in fake.calls_of("edit_message")][:2] == [429, 200]


def test_register_commands_puts_run_and_ask_with_their_options_and_the_chat_commands(
    fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in discord_settings(fake).items():
        monkeypatch.setenv(f"THREADBOX_{name.upper()}", str(value))
    assert main(["discord", "register-commands"]) == 0
    assert "registered /run, /ask, /fork, /forget, /upgrade" in capsys.readouterr().out
    [call] = fake.calls_of("set_commands")
    assert call.headers["authorization"] == "Bot fake-discord-bot-token"
    commands = cast(list[dict[str, Any]], call.body)  # Call.body says dict; set_commands sends a list
    options = {
        c["name"]: [(o["name"], o["type"], o["required"]) for o in c.get("options", [])] for c in commands
    }
    assert options == {
        "run": [("code", 3, True), ("file", 11, False)],
        "ask": [("question", 3, True), ("file", 11, False)],
        "fork": [],
        "forget": [],
        "upgrade": [],
    }


def test_a_channel_where_no_thread_may_be_opened_gets_a_sentence_and_nothing_runs(
    discord: DiscordSender, fake: FakeDiscord
) -> None:
    fake.refuse("message_thread", 403, 50013, "Missing Permissions")
    channel = fake.text_channel()
    sent = discord.run("print('never')", channel)
    original = fake.interactions[sent.body["token"]]["original"]
    text = wait_text(fake, channel["id"], "I could not open a thread for this here", "Missing Permissions")
    assert "print('never')" not in text  # the echo was replaced by the sentence
    assert [m["id"] for m in fake.messages_in(channel["id"])] == [original]  # the response, edited
    assert fake.threads_of(channel["id"]) == [] and thread_ids(discord) == []
    errors = discord.client.runtime.metrics.registry.get_sample_value  # type: ignore[attr-defined]
    assert errors("threadbox_discord_errors_total", {"kind": "open_failed"}) == 1


def test_an_unknown_command_gets_an_ephemeral_sentence(discord: DiscordSender, fake: FakeDiscord) -> None:
    body = command_body(fake, "run", "print(1)", fake.text_channel())
    body["data"]["name"] = "weather"
    answer = discord.deliver(body).json()
    assert answer["type"] == 4 and answer["data"]["flags"] == 64 and "/run" in answer["data"]["content"]
    assert interactions(discord, "unknown") == 1 and fake.calls == []


def test_long_output_is_split_under_2000_characters_and_very_long_output_is_attached(
    discord: DiscordSender, fake: FakeDiscord
) -> None:
    medium = thread_of(
        fake, discord.run("for i in range(60):\n    print(f'{i:04d} ' + 'y' * 40)", fake.text_channel())
    )
    huge = thread_of(
        fake, discord.run("for i in range(4000):\n    print(f'{i:05d} ' + 'z' * 40)", fake.text_channel())
    )

    wait_text(fake, medium, "0000 ", "0059 ")
    parts = [m["content"] for m in fake.messages_in(medium)]
    assert len(parts) == 2  # 60 lines of 46 characters do not fit in one
    assert all(len(p) <= 2000 and p.count("```") % 2 == 0 for p in parts)

    wait_text(fake, huge, "Files from this turn: `output.txt`", timeout=120)
    [attached] = fake.files_in(huge)
    assert b"03999 " + b"z" * 40 in attached.content
    contents = [m["content"] for m in fake.messages_in(huge)]
    assert len(contents) == 5 and "output.txt" in contents[3] and all(len(c) <= 2000 for c in contents)


@dataclass
class DiscordChat:
    """Threads are the channels of threads the bot opened (tests/support/fork_chat.py)."""

    discord: DiscordSender
    fake: FakeDiscord

    def run(self, thread: str, code: str) -> None:
        self.discord.run(code, self.fake.channels[thread])

    def command(self, thread: str, name: Literal["fork", "forget", "upgrade"]) -> None:
        self.discord.command(name, "", self.fake.channels[thread])

    def wait(self, thread: str, *needles: str) -> str:
        return wait_text(self.fake, thread, *needles)

    def fork_of(self, thread: str) -> tuple[str, str]:
        parent = self.fake.channels[thread]["parent_id"]

        def others() -> list[str]:
            return [t["id"] for t in self.fake.threads_of(parent) if t["id"] != thread]

        [fork] = self.fake.wait_for(others, 60, "the fork's thread")
        return fork, f"<#{fork}>"


def test_fork_opens_a_thread_with_the_copy_and_forget_keeps_only_the_files(
    discord: DiscordSender, fake: FakeDiscord
) -> None:
    first = discord.run(fork_chat.SET_UP, fake.text_channel())
    original = thread_of(fake, first)
    wait_text(fake, original, fork_chat.SET)
    fork = fork_chat.fork_and_forget(DiscordChat(discord, fake), original)
    assert fake.channels[fork]["name"] == "fork: x = 41"
    runtime = discord.client.runtime  # type: ignore[attr-defined]
    records = {r["thread"]: r for r in (runtime.store.get_json(t, "meta") for t in thread_ids(discord))}
    assert records[fork]["forked_from"] == records[original]["id"]


def test_fork_and_forget_outside_a_thread_say_where_they_work(
    discord: DiscordSender, fake: FakeDiscord
) -> None:
    channel = fake.text_channel()
    for name in ("fork", "forget", "upgrade"):
        discord.command(name, "", channel)
        wait_text(fake, channel["id"], f"`/{name}` is about a conversation")
    assert fake.threads_of(channel["id"]) == [] and thread_ids(discord) == []
