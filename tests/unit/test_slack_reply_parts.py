"""The pieces of a Slack reply that need no Slack: safe Markdown, status texts, task cards,
and the checks on what arrives at /slack/events."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from controller.events import Status
from controller.slack.blocks import WORD_JOINER, defuse
from controller.slack.cards import OUTPUT_LINES, Card
from controller.slack.route import is_payload, signature_of, signed
from controller.slack.status import ordinal, status_text


def test_relayed_text_cannot_mention_or_broadcast() -> None:
    for trigger in ("<!channel>", "<!here>", "<@U123>", "<#C42>", "@channel", "@here", "@everyone"):
        safe = defuse(f"hey {trigger} there")
        assert trigger not in safe and safe.replace(WORD_JOINER, "") == f"hey {trigger} there"
    assert defuse("a < b and x@example.com, **bold**") == "a < b and x@example.com, **bold**"


def test_status_texts() -> None:
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st"
    ]  # fmt: skip
    assert status_text(Status(phase="queued", message="", queue_position=3)) == "is queued (3rd)"
    assert status_text(Status(phase="restoring", message="")) == "is restoring your files…"
    assert status_text(Status(phase="ready", message="")) is None


def test_a_card_shows_its_code_and_the_tail_of_its_output() -> None:
    card = Card("cell-1", "for i in range(100):\n    print(i)")
    assert card.chunk() == {
        "type": "task_update",
        "id": "cell-1",
        "title": "Running code",
        "status": "in_progress",
        "details": "```\nfor i in range(100):\n    print(i)\n```",
    }
    assert card.preview_due()
    card.add_output("".join(f"{i}\n" for i in range(100)))
    card.finish(failed=False)
    chunk = card.chunk()
    assert chunk["status"] == "complete" and card.cut and not card.preview_due()
    shown = chunk["output"].strip("`\n").splitlines()
    assert shown[0] == "…" and shown[1:] == [str(i) for i in range(100 - OUTPUT_LINES, 100)]


def test_events_and_button_presses_pass_malformed_bodies_do_not() -> None:
    assert is_payload(b'{"type": "event_callback"}')
    assert is_payload(urlencode({"payload": json.dumps({"type": "block_actions"})}).encode())
    for bad in (b"{nope", b"[1]", b"payload=%7Bnope", b"token=x", b'{"t": "caf\xe9"}'):
        assert not is_payload(bad)


def test_the_signature_covers_the_raw_bytes() -> None:
    body, stamp = b'{"t": "caf\xe9"}', str(int(time.time()))
    headers = {"x-slack-request-timestamp": stamp, "x-slack-signature": signature_of("s", stamp, body)}
    assert signed("s", body, headers)
    assert not signed("other", body, headers)
    stale = str(int(time.time()) - 301)
    assert not signed("s", body, headers | {"x-slack-request-timestamp": stale})
    assert not signed("s", body, headers | {"x-slack-request-timestamp": "soon"})
