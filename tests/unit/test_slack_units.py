"""The Slack front-end's pure parts: message selection, layout, login-page detection, rate limits, wiring."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import SecretStr

from controller.chat.layout import split_message
from controller.chat.transcript import Transcript, describe_error
from controller.config import Settings
from controller.events import Error
from controller.runtime import build_runtime
from controller.slack.attachments import Downloader, is_login_page
from controller.slack.config import SocketMode
from controller.slack.inbound import answer_rule, clean_text, parse
from controller.slack.layout import OVERFLOW_NOTE, escape, layout
from controller.slack.ratelimit import TokenBucket, WorkspaceBuckets
from controller.slack.service import SlackService

BOT = "U0BOT"


def event(**fields: Any) -> dict[str, Any]:
    return {"type": "message", "user": "U1", "text": "hi", "ts": "1.000001", "channel": "C1", **fields}


def test_parse_keeps_user_messages_and_drops_bots_edits_and_self() -> None:
    msg = parse(event(text=f"<@{BOT}> run &lt;this&gt; &amp; that"), "T1", BOT, False)
    assert msg is not None and msg.mentioned and msg.text == "run <this> & that"
    assert msg.root_ts == "1.000001" and msg.starts_thread
    reply = parse(event(thread_ts="0.5", subtype="thread_broadcast"), "T1", BOT, False)
    assert reply is not None and reply.root_ts == "0.5" and not reply.starts_thread
    assert parse(event(subtype="file_share", files=[{"id": "F1"}]), "T1", BOT, False) is not None
    for dropped in (event(subtype="message_changed"), event(bot_id="B2"), event(user=BOT), event(user=None)):
        assert parse(dropped, "T1", BOT, False) is None


def test_claims_are_per_message_so_mention_and_message_events_collide() -> None:
    a = parse(event(), "T1", BOT, True)
    b = parse(event(), "T1", BOT, False)
    assert a is not None and b is not None and a.claim == b.claim


def test_answer_rules() -> None:
    top = parse(event(), "T1", BOT, False)
    in_thread = parse(event(thread_ts="0.5"), "T1", BOT, False)
    dm = parse(event(channel_type="im"), "T1", BOT, False)
    mention = parse(event(text=f"<@{BOT}|threadbox> go"), "T1", BOT, False)
    assert top and in_thread and dm and mention
    assert answer_rule(top, "all") == "never"
    assert answer_rule(in_thread, "all") == "if_active"
    assert answer_rule(in_thread, "mention") == "never"
    assert answer_rule(dm, "mention") == "always"
    assert answer_rule(mention, "mention") == "always"


def test_clean_text_keeps_other_mentions() -> None:
    assert clean_text(f"<@{BOT}> ask <@U2>", BOT) == "ask <@U2>"


def test_split_keeps_fences_balanced_and_within_the_limit() -> None:
    text = "intro\n```\n" + "\n".join(f"line {i} " + "x" * 30 for i in range(300)) + "\n```\nafter"
    chunks = split_message(text, 1000)
    assert len(chunks) > 5
    assert all(len(c) <= 1000 and c.count("```") % 2 == 0 for c in chunks)
    assert chunks[1].startswith("```") and chunks[-1].endswith("after")
    body = "".join(c.replace("```\n", "").replace("\n```", "") for c in chunks)
    assert all(f"line {i} " in body for i in range(300))


def test_split_cuts_an_overlong_line() -> None:
    chunks = split_message("y" * 2500, 1000)
    assert "".join(chunks) == "y" * 2500 and all(len(c) <= 1000 for c in chunks)


def test_layout_caps_messages_and_escapes() -> None:
    assert layout("a < b & c").messages == ["a &lt; b &amp; c"]
    long = layout("\n".join("z" * 80 for _ in range(300)), limit=1000, max_messages=3)
    assert long.overflow and len(long.messages) == 3 and long.messages[-1] == OVERFLOW_NOTE
    assert escape("<@U1>") == "&lt;@U1&gt;"


def test_login_page_detection() -> None:
    assert is_login_page("text/html; charset=utf-8", b"<html>", "text/csv")
    assert is_login_page("application/octet-stream", b"\n<!DOCTYPE html>", "text/csv")
    assert not is_login_page("text/csv", b"a,b\n", "text/csv")
    assert not is_login_page("text/html", b"<html>", "text/html")  # the user attached real HTML


def test_the_token_goes_only_to_slack_and_the_configured_api() -> None:
    d = Downloader("xoxb-1", frozenset({"127.0.0.1"}), 0)
    assert d.trusted("https://files.slack.com/files-pri/T1-F1/x.csv")
    assert d.trusted("http://127.0.0.1:9/files-pri/F1/x")
    assert not d.trusted("https://slack.com.evil.example/x")
    assert not d.trusted("https://cdn.example.net/x")


async def test_token_bucket_refuses_then_waits() -> None:
    bucket = TokenBucket(rate=20, burst=2)
    assert bucket.try_take() and bucket.try_take() and not bucket.try_take()
    started = time.monotonic()
    await bucket.take()
    assert 0.02 < time.monotonic() - started < 1
    buckets = WorkspaceBuckets()
    assert buckets.for_team("T1") is buckets.for_team("T1") is not buckets.for_team("T2")


def test_errors_read_as_sentences_with_a_trimmed_traceback() -> None:
    tb = [f"frame {i}" for i in range(40)]
    transcript = Transcript()
    transcript.add_error(Error(kind="exception", ename="KeyError", evalue="'x'", traceback=tb))
    md = transcript.markdown()
    assert md.startswith("Your code raised `KeyError: 'x'`") and "frame 39" in md and "frame 5\n" not in md
    assert "28 lines omitted" in md
    quota = describe_error(Error(kind="quota", ename="QuotaExceeded", evalue="too many files"))
    assert quota == "A quota was reached: too many files"


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_install_wires_a_route_or_a_socket_connection(
    tmp_path: Path, mode: Literal["http", "socket"]
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        sandbox_python=Path("/usr/bin/python3"),
        slack_mode=mode,
        slack_bot_token=SecretStr("xoxb-1"),
        slack_signing_secret=SecretStr("s") if mode == "http" else None,
        slack_app_token=SecretStr("xapp-1") if mode == "socket" else None,
        slack_api_url="http://127.0.0.1:9/api",
    )
    runtime = build_runtime(settings)
    paths = {getattr(r, "path", None) for router in runtime.chat_routers for r in router.routes}
    assert ("/slack/events" in paths) == (mode == "http")
    start, _ = runtime.services[-1]
    service = start.__self__  # type: ignore[attr-defined]
    assert isinstance(service, SlackService)
    assert service.bot.client.base_url == "http://127.0.0.1:9/api/"  # the "/" urljoin needs
    if mode == "socket":
        assert isinstance(service.transport, SocketMode)
        handler = service.socket_handler(service.transport)
        assert handler.app is service.app and handler.app_token == "xapp-1"
        assert handler.client.web_client.base_url == "http://127.0.0.1:9/api/"
        await handler.close_async()  # type: ignore[no-untyped-call]
    await service.stop()  # nothing connected or running: returns at once
