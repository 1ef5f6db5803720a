"""Slack's agent surface end to end: streamed replies with task cards, the chat.update fallback,
the status line, Stop and feedback buttons, the Messages tab. Real kernels, the fake Web API."""

from __future__ import annotations

import time
from typing import Any

import pytest

from controller.identity import ThreadKey
from controller.slack.actions import STOP_POLL_SECONDS, feedback_key, stop_key, turn_key
from devkit.fake_slack import TEAM_ID, FakeSlack
from devkit.slack_events import SlackSender, code, envelope, slack_settings
from tests.support.fake_openai import Text, fake_llm, run_python

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ANALYSIS = (
    "import pandas as pd\nimport matplotlib.pyplot as plt\ndf = pd.read_csv('sales.csv')\n"
    "print('total amount:', df['amount'].sum())\ndf.plot(x='month', y='amount')\nplt.show()\n"
)
ANSWER = "The **total** is 300.0; see the [chart](#) by month. <!channel>"
SALES = b"month,amount\njan,120.5\nfeb,80.25\nmar,99.25\n"


def ask_csv_question(api: Any, fake: FakeSlack, channel: str) -> tuple[SlackSender, str]:
    """The acceptance turn: a CSV question answered by the LLM agent with two executions."""
    with fake_llm() as llm:
        llm.add(
            run_python("print('rows:', len(open('sales.csv').readlines()) - 1)", when="total"),
            run_python(ANALYSIS, when="rows: 3"),
            Text(ANSWER, when="total amount: 300.0"),
        )
        llm_settings = {"agent": "builtin", "llm_base_url": llm.base_url, "llm_api_key": "test"}
        slack = SlackSender(api(**slack_settings(fake, **llm_settings)))
        attachment = fake.add_download("sales.csv", SALES)
        sent = slack.mention(channel, "What is the total amount in sales.csv? Plot it.", files=[attachment])
        finished(fake, channel, sent.ts)
        fake.wait_for(lambda: fake.files_in_thread(channel, sent.ts), 30, "the figure")
    return slack, sent.ts


def finished(fake: FakeSlack, channel: str, ts: str) -> dict[str, Any]:
    """The reply that carries the feedback buttons: a stopped stream, or the last edited message."""

    def final() -> dict[str, Any] | None:
        replies = [m for m in fake.messages_in_thread(channel, ts) if m.get("bot_id")]
        return next((m for m in replies if feedback_of(m)), None)

    return fake.wait_for(final, 90, "the final reply with feedback buttons")


def feedback_of(message: dict[str, Any]) -> dict[str, Any] | None:
    elements = [
        e for b in message.get("blocks") or [] if b["type"] == "context_actions" for e in b["elements"]
    ]
    return next((e for e in elements if e["type"] == "feedback_buttons"), None)


def stop_button(fake: FakeSlack, channel: str, ts: str) -> tuple[dict[str, Any], str]:
    """The running reply's Stop button and the reply's ts, once its card shows."""

    def running() -> tuple[dict[str, Any], str] | None:
        for stream in fake.streams_in_thread(channel, ts):
            blocks = [b for c in stream["chunks"] if c["type"] == "blocks" for b in c["blocks"]]
            if stream["tasks"] and blocks:
                return blocks[0]["elements"][0], stream["ts"]
        return None

    return fake.wait_for(running, 90, "the running card and its Stop button")


def test_a_csv_question_streams_cards_markdown_plot_and_feedback(api: Any, fake: FakeSlack) -> None:
    slack, ts = ask_csv_question(api, fake, "C1")
    assert 'kind="stream_refused"' not in slack.client.get("/metrics").text

    streams = fake.streams_in_thread("C1", ts)
    assert len(streams) == 1 and streams[0]["stream"] == "stopped"
    assert len(fake.calls_of("chat.startStream")) == 1
    assert not fake.calls_of("chat.postMessage") and not fake.calls_of("chat.update")
    stream = streams[0]
    cards = [stream["tasks"][c["id"]] for c in stream["chunks"] if c["type"] == "task"]
    assert [c["status"] for c in cards] == ["complete", "complete"]
    assert "rows: 3" in cards[0]["output"] and "total amount: 300.0" in cards[1]["output"]
    assert "read_csv('sales.csv')" in cards[1]["details"]
    text = "".join(c["text"] for c in stream["chunks"] if c["type"] == "markdown_text")
    assert "The **total** is 300.0; see the [chart](#) by month." in text
    assert "<!channel>" not in text and "<\u2060!channel>" in text  # shown, but notifies nobody
    assert [c["id"] for c in stream["chunks"] if c["type"] == "task"] == ["cell-1", "cell-2"]
    assert [f.name for f in fake.files_in_thread("C1", ts)] == ["figure-1.png"]
    assert feedback_of(stream) is not None


def test_with_streaming_refused_the_same_turn_completes_by_chat_update(api: Any, fake: FakeSlack) -> None:
    fake.refuse_streaming("missing_scope")
    slack, ts = ask_csv_question(api, fake, "C2")

    assert [c.status for c in fake.calls_of("chat.startStream")] == [200]  # answered ok: false
    assert fake.streams_in_thread("C2", ts) == []
    final = finished(fake, "C2", ts)
    assert "total amount: 300.0" in final["text"]
    markdown = [b["text"] for b in final["blocks"] if b["type"] == "markdown"]
    assert markdown and "The **total** is 300.0" in markdown[0]
    assert not any(b["type"] == "actions" for b in final["blocks"])  # Stop is gone once done
    assert [f.name for f in fake.files_in_thread("C2", ts)] == ["figure-1.png"]
    assert 'threadbox_slack_errors_total{kind="stream_refused"} 1.0' in slack.client.get("/metrics").text


def test_a_stream_slack_ends_midway_is_finished_by_chat_update(slack: SlackSender, fake: FakeSlack) -> None:
    # Ended, not one failed appendStream: a reply whose first flush carries all its output until
    # the end makes no appendStream call, and would then finish by a stopStream that works.
    fake.end_streams_at_once()
    sent = slack.mention("C7", code("import time\nprint('before')\ntime.sleep(2)\nprint('after')"))
    final = finished(fake, "C7", sent.ts)
    assert "before" in final["text"] and "after" in final["text"]
    assert 'threadbox_slack_errors_total{kind="stream_refused"} 1.0' in slack.client.get("/metrics").text
    assert len(fake.streams_in_thread("C7", sent.ts)) == 1  # the one the turn began with
    assert fake.calls_of("chat.startStream")[1:] == []  # not retried for this reply


def test_status_says_start_restore_and_queue_and_posts_no_placeholder(api: Any, fake: FakeSlack) -> None:
    slack = SlackSender(api(**slack_settings(fake, max_sandboxes=1)))
    busy = slack.mention("C3", code("import time\ntime.sleep(4)\nprint('first done')"))
    stop_button(fake, "C3", busy.ts)  # the first thread holds the only sandbox
    queued = slack.mention("C3", code("print('second done')"))
    for sent in (busy, queued):
        finished(fake, "C3", sent.ts)

    def statuses(ts: str) -> list[str]:
        return [
            c.params["status"]
            for c in fake.calls_of("assistant.threads.setStatus")
            if c.params["thread_ts"] == ts
        ]

    assert statuses(busy.ts)[:2] == ["is starting a sandbox…", "is restoring your files…"]
    assert "is queued (1st)" in statuses(queued.ts)
    loading = fake.calls_of("assistant.threads.setStatus")[0].params["loading_messages"]
    assert len(loading) > 1  # they rotate
    posted = " ".join(str(c.params.get("text")) for c in fake.calls_of("chat.postMessage"))
    assert "Starting a sandbox" not in posted and not fake.calls_of("chat.update")


@pytest.mark.timeout(120)
def test_stop_interrupts_a_busy_loop_for_the_owner_only(api: Any, fake: FakeSlack) -> None:
    slack = SlackSender(api(**slack_settings(fake)))
    sent = slack.mention("C4", code("x = 1\nwhile True: pass"))
    button, reply_ts = stop_button(fake, "C4", sent.ts)

    assert slack.click(button, "C4", sent.ts, reply_ts, user="U0MALLORY").status_code == 200
    fake.wait_for(lambda: fake.ephemeral, 30, "the refusal, told to the non-owner")
    assert "Only <@U0ALICE> can stop" in fake.ephemeral[0]["text"]
    assert fake.ephemeral[0]["user"] == "U0MALLORY"
    assert fake.streams_in_thread("C4", sent.ts)[0]["stream"] == "streaming"  # still running

    clicked = time.monotonic()
    assert slack.click(button, "C4", sent.ts, reply_ts).status_code == 200
    stream = finished(fake, "C4", sent.ts)
    runtime = slack.client.runtime  # type: ignore[attr-defined]
    assert time.monotonic() - clicked < runtime.settings.interrupt_grace + 3
    card = stream["tasks"]["cell-1"]
    assert card["status"] == "error" and "Stopped on request" in card["output"]
    assert "variables defined before are kept" in card["output"]  # interrupted, not restarted
    metrics = slack.client.get("/metrics").text
    assert 'threadbox_slack_stops_total{outcome="refused"} 1.0' in metrics
    assert 'threadbox_slack_stops_total{outcome="stopped"} 1.0' in metrics

    follow = slack.send("message", "C4", code("print('x is still', x)"), thread_ts=sent.ts)
    fake.wait_for(lambda: "x is still 1" in fake.text_in_thread("C4", sent.ts), 60, "the follow-up")
    assert follow.response.status_code == 200


@pytest.mark.timeout(120)
def test_a_stop_pressed_on_another_replica_reaches_the_turn_through_the_store(
    api: Any, fake: FakeSlack
) -> None:
    slack = SlackSender(api(**slack_settings(fake)))
    sent = slack.mention("C8", code("while True: pass"))
    button, _ = stop_button(fake, "C8", sent.ts)
    thread_id, _, turn = button["value"].partition(":")
    assert turn == sent.ts
    runtime = slack.client.runtime  # type: ignore[attr-defined]
    # What the other replica's handler writes when the turn does not run there.
    runtime.store.put_state(stop_key(thread_id), {"turn": turn, "at": time.time()})
    asked = time.monotonic()
    card = finished(fake, "C8", sent.ts)["tasks"]["cell-1"]
    assert card["status"] == "error" and "Stopped on request" in card["output"]
    assert time.monotonic() - asked < STOP_POLL_SECONDS + runtime.settings.interrupt_grace + 3
    assert runtime.store.get_state(stop_key(thread_id)) is None  # taken, so the next turn runs


def test_feedback_is_counted_and_kept_with_the_turn(api: Any, fake: FakeSlack) -> None:
    slack = SlackSender(api(**slack_settings(fake)))
    sent = slack.mention("C5", code("print('hi')"))
    stream = finished(fake, "C5", sent.ts)
    buttons = feedback_of(stream)
    assert buttons is not None
    for pressed in ("negative_button", "positive_button"):  # a toggle: the last press wins
        button = {
            "type": "feedback_buttons",
            "action_id": buttons["action_id"],
            "value": buttons[pressed]["value"],
        }
        assert slack.click(button, "C5", sent.ts, stream["ts"]).status_code == 200

    store = slack.client.runtime.store  # type: ignore[attr-defined]
    thread_id = ThreadKey("slack", TEAM_ID, "C5", sent.ts).id

    def recorded() -> tuple[dict[str, Any], dict[str, Any]] | None:
        # The presses can land before the turn is recorded; both must be kept, in either order.
        turn, given = (
            store.get_json(thread_id, turn_key(stream["ts"])),
            store.get_json(thread_id, feedback_key(stream["ts"])),
        )
        return (turn, given) if turn and given and given["value"] == "good" else None

    turn, given = fake.wait_for(recorded, 30, "the turn's record and its last feedback")
    assert turn["asked"] == sent.ts and turn["reply"] == stream["ts"] and turn["user"] == "U0ALICE"
    assert given["user"] == "U0ALICE"
    metrics = slack.client.get("/metrics").text
    assert 'threadbox_slack_feedback_total{value="good"} 1.0' in metrics
    assert 'threadbox_slack_feedback_total{value="bad"} 1.0' in metrics
    samples = [line for line in metrics.splitlines() if line.startswith("threadbox_slack_feedback_total{")]
    assert {line.split("{")[1].split("=")[0] for line in samples} == {"value"}  # no per-thread label


def test_composer_shaped_code_blocks_run(slack: SlackSender, fake: FakeSlack) -> None:
    sent = slack.mention("C6", "```print(6 * 7)```")
    fake.wait_for(lambda: "42" in fake.text_in_thread("C6", sent.ts), 90, "the one-liner's output")
    slack.send("message", "C6", "```(a, b) = 1, 2\nprint('sum', a + b)```", thread_ts=sent.ts)
    fake.wait_for(lambda: "sum 3" in fake.text_in_thread("C6", sent.ts), 60, "the multi-line block's output")


def test_opening_the_messages_tab_suggests_prompts(slack: SlackSender, fake: FakeSlack) -> None:
    event = {
        "type": "app_home_opened",
        "user": "U0ALICE",
        "channel": "D9",
        "tab": "messages",
        "event_ts": "1.2",
    }
    assert slack.deliver(envelope(event)).status_code == 200
    call = fake.wait_for(lambda: fake.calls_of("assistant.threads.setSuggestedPrompts"), 30, "the prompts")[0]
    assert call.params["channel_id"] == "D9" and "thread_ts" not in call.params
    assert 0 < len(call.params["prompts"]) <= 4
    home = {**event, "tab": "home", "event_ts": "1.3"}
    assert slack.deliver(envelope(home)).status_code == 200
