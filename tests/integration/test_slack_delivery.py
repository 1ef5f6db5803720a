"""Slack deliveries: signatures, malformed bodies, retries and double delivery, each turn run once."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.identity import ThreadKey
from devkit.fake_slack import TEAM_ID, FakeSlack
from devkit.slack_events import SlackSender, code, envelope, new_ts
from tests.support.poll import wait_until

pytestmark = pytest.mark.integration

# Appends to a file, so the store shows how many times the code really ran.
COUNTING = code("open('runs.txt', 'a').write('x')\nprint('runs:', len(open('runs.txt').read()))")


def runs_in(slack: SlackSender, channel: str, root_ts: str) -> bytes:
    runtime = slack.client.runtime  # type: ignore[attr-defined]
    return bytes(runtime.store.read_file(ThreadKey("slack", TEAM_ID, channel, root_ts).id, "runs.txt"))


def _samples(slack: SlackSender) -> dict[tuple[str, str], float]:
    """Every sample of the controller's /metrics: (name, outcome label) -> value."""
    families = text_string_to_metric_families(slack.client.get("/metrics").text)
    return {(m.name, m.labels.get("outcome", "")): m.value for f in families for m in f.samples}


def settled(slack: SlackSender) -> bool:
    """Every acknowledged delivery has been through its listener, and no answer is under way:
    from here on nothing more can be posted (the code's own signal, not a pause)."""
    samples = _samples(slack)
    acked = sum(
        v for (n, o), v in samples.items() if n == "threadbox_slack_acks_total" and o in ("ok", "retry")
    )
    handled = sum(v for (n, _), v in samples.items() if n == "threadbox_slack_events_handled_total")
    return acked == handled and samples[("threadbox_slack_answers_running", "")] == 0


def settle_then_bot_messages(
    slack: SlackSender, fake: FakeSlack, channel: str, thread_ts: str
) -> list[dict[str, Any]]:
    """Bot messages in the thread once every delivery, duplicates included, has been handled."""
    assert wait_until(lambda: settled(slack), 60)
    return [m for m in fake.messages_in_thread(channel, thread_ts) if m.get("bot_id")]


def test_a_retried_event_gets_exactly_one_reply(slack: SlackSender, fake: FakeSlack) -> None:
    sent = slack.mention("C1", COUNTING)
    fake.wait_for(lambda: "runs: 1" in fake.text_in_thread("C1", sent.ts), 60, "the first reply")
    for retry in (1, 2):
        assert slack.deliver(sent.body, retry=retry).status_code == 200

    assert len(settle_then_bot_messages(slack, fake, "C1", sent.ts)) == 1
    assert runs_in(slack, "C1", sent.ts) == b"x"
    scrape = slack.client.get("/metrics").text
    assert 'threadbox_slack_acks_total{outcome="ok"} 1.0' in scrape
    assert 'threadbox_slack_acks_total{outcome="retry"} 2.0' in scrape
    assert 'threadbox_slack_events_total{type="app_mention"} 3.0' in scrape
    assert "threadbox_slack_ack_seconds_count 3.0" in scrape


def test_mention_and_message_events_for_one_message_run_it_once(slack: SlackSender, fake: FakeSlack) -> None:
    sent = slack.mention("C2", COUNTING)
    also = slack.send("message", "C2", sent.body["event"]["text"], ts=sent.ts)
    assert also.event_id != sent.event_id and also.response.status_code == 200
    fake.wait_for(lambda: "runs: 1" in fake.text_in_thread("C2", sent.ts), 60, "the reply")

    assert len(settle_then_bot_messages(slack, fake, "C2", sent.ts)) == 1
    assert runs_in(slack, "C2", sent.ts) == b"x"


def test_a_retry_after_a_failed_first_delivery_is_answered_once(slack: SlackSender, fake: FakeSlack) -> None:
    fake.fail("assistant.threads.setStatus", "internal_error", times=1)  # the turn's first call
    sent = slack.mention("C3", COUNTING)
    fake.wait_for(lambda: fake.calls_of("assistant.threads.setStatus"), 30, "the failed first call")
    assert wait_until(lambda: settled(slack), 60)  # the failed answer has released its claims

    assert slack.deliver(sent.body, retry=1).status_code == 200
    fake.wait_for(lambda: "runs: 1" in fake.text_in_thread("C3", sent.ts), 60, "the retry's reply")
    assert len(settle_then_bot_messages(slack, fake, "C3", sent.ts)) == 1
    assert runs_in(slack, "C3", sent.ts) == b"x"
    assert 'threadbox_slack_errors_total{kind="turn_failed"} 1.0' in slack.client.get("/metrics").text


def _assert_nothing_happened(slack: SlackSender, fake: FakeSlack, thread_id: str) -> None:
    # Rejected before Bolt, in the request itself: no listener ran, none is pending.
    assert settled(slack) and ("threadbox_slack_acks_total", "ok") not in _samples(slack)
    runtime = slack.client.runtime  # type: ignore[attr-defined]
    assert fake.calls == []  # not even Bolt's auth.test
    assert runtime.store.list_threads() == []
    assert not runtime.manager.is_live(thread_id)
    sandboxes = runtime.settings.data_dir / "sandboxes"
    assert not sandboxes.exists() or not any(sandboxes.iterdir())


def test_forged_stale_and_malformed_requests_are_rejected_before_anything_runs(
    slack: SlackSender, fake: FakeSlack
) -> None:
    ts = new_ts()
    body = envelope({"type": "app_mention", "user": "U1", "text": COUNTING, "ts": ts, "channel": "C4"})
    raw = json.dumps(body).encode()

    forged = slack.post_raw(raw, signature="v0=" + "0" * 64)
    assert forged.status_code == 401
    stale = slack.post_raw(raw, timestamp=int(time.time()) - 6 * 60)
    assert stale.status_code == 401
    nonsense_stamp = slack.chat.post(
        "/slack/events",
        content=raw,
        headers={"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=1"},
    )
    assert nonsense_stamp.status_code == 401
    for malformed in (b"{not json", b"[1, 2]", b"payload=%7Bnope", b'{"text": "caf\xe9"}'):
        assert slack.post_raw(malformed).status_code == 400  # validly signed, not UTF-8 at the end
    _assert_nothing_happened(slack, fake, ThreadKey("slack", TEAM_ID, "C4", ts).id)
    scrape = slack.client.get("/metrics").text
    assert 'threadbox_slack_acks_total{outcome="rejected"} 7.0' in scrape
    assert "threadbox_slack_events_total{" not in scrape  # nothing reached the listeners


def test_a_failed_edit_is_counted_and_the_reply_still_lands(slack: SlackSender, fake: FakeSlack) -> None:
    fake.refuse_streaming()
    fake.fail("chat.update", "internal_error", times=1)
    sent = slack.mention("C5", code("import time\nprint('first')\ntime.sleep(2)\nprint('second')"))
    fake.wait_for(lambda: "second" in fake.text_in_thread("C5", sent.ts), 60, "the final edit")

    assert "first" in fake.text_in_thread("C5", sent.ts)
    assert 'threadbox_slack_errors_total{kind="api_call"} 1.0' in slack.client.get("/metrics").text
