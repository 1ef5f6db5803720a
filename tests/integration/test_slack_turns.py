"""Slack turns end to end: signed events over real HTTP, real kernels, the fake Slack Web API."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from controller.identity import ThreadKey
from devkit.fake_slack import TEAM_ID, FakeFile, FakeSlack
from devkit.slack_events import SlackSender, code, slack_settings
from tests.support.fake_openai import Text, fake_llm, run_python

pytestmark = pytest.mark.integration


def thread_says(fake: FakeSlack, channel: str, thread_ts: str, *needles: str) -> str | None:
    text = fake.text_in_thread(channel, thread_ts)
    return text if all(n in text for n in needles) else None


def wait_text(fake: FakeSlack, channel: str, thread_ts: str, *needles: str, timeout: float = 90) -> str:
    return fake.wait_for(
        lambda: thread_says(fake, channel, thread_ts, *needles), timeout, f"{needles} in {thread_ts}"
    )


def test_mention_runs_code_in_thread_and_follow_up_reuses_the_sandbox(
    slack: SlackSender, fake: FakeSlack
) -> None:
    first = slack.mention("C1", code("x = 41\nprint('x is', x)"))
    assert first.response.status_code == 200
    ignored = slack.send("message", "C1", code("print('nobody asked me')"))
    wait_text(fake, "C1", first.ts, "x is 41")

    follow_up = slack.send("message", "C1", code("print('x plus one is', x + 1)"), thread_ts=first.ts)
    assert follow_up.response.status_code == 200
    wait_text(fake, "C1", first.ts, "x plus one is 42")

    replies = [m for m in fake.messages if m.get("bot_id")]
    assert replies and all(m["thread_ts"] == first.ts for m in replies)
    assert fake.messages_in_thread("C1", ignored.ts) == []
    runtime = slack.client.runtime  # type: ignore[attr-defined]
    thread_id = ThreadKey("slack", TEAM_ID, "C1", first.ts).id
    assert runtime.store.list_threads() == [thread_id]
    assert runtime.store.get_json(thread_id, "meta")["user"] == "U0ALICE"
    assert runtime.manager.is_live(thread_id)


def test_attached_csv_is_read_by_pandas_and_plots_are_uploaded(slack: SlackSender, fake: FakeSlack) -> None:
    csv = b"city,temp\nOslo,3\nLima,19\n"
    attachment = fake.add_download("weather.csv", csv)
    source = (
        "import pandas as pd\nimport matplotlib.pyplot as plt\n"
        "df = pd.read_csv('weather.csv')\nprint('total', df['temp'].sum())\n"
        "df.plot(x='city', y='temp')\nplt.savefig('chart.png')\nplt.show()"
    )
    sent = slack.mention("C2", code(source), files=[attachment])
    wait_text(fake, "C2", sent.ts, "total 22")

    def images() -> dict[str, FakeFile] | None:
        found = {f.name: f for f in fake.files_in_thread("C2", sent.ts)}
        return found if {"figure-1.png", "chart.png"} <= set(found) else None

    uploaded = fake.wait_for(images, 30, "the figure and the saved chart")
    assert uploaded["figure-1.png"].content.startswith(b"\x89PNG")
    assert uploaded["chart.png"].content.startswith(b"\x89PNG")

    methods = [c.method for c in fake.calls if c.method.startswith(("files.", "upload"))]
    assert methods[:3] == ["files.getUploadURLExternal", "upload", "files.completeUploadExternal"]
    download = fake.calls_of("download")
    assert download and download[0].headers["authorization"] == "Bearer xoxb-fake-bot-token"
    runtime = slack.client.runtime  # type: ignore[attr-defined]
    thread_id = ThreadKey("slack", TEAM_ID, "C2", sent.ts).id
    assert runtime.store.read_file(thread_id, "weather.csv") == csv


def test_an_attachment_named_like_a_folder_is_refused_by_the_upload_pipeline(
    slack: SlackSender, fake: FakeSlack
) -> None:
    sent = slack.mention("C7", code("import os; os.makedirs('sub'); open('sub/a.txt', 'w').write('kept')"))
    fake.wait_for(lambda: fake.files_in_thread("C7", sent.ts), 90, "the saved file, posted after the turn")
    attachment = fake.add_download("sub", b"would replace a folder")
    slack.send(
        "message", "C7", code("print(open('sub/a.txt').read())"), thread_ts=sent.ts, files=[attachment]
    )
    wait_text(fake, "C7", sent.ts, "I could not take `sub`", "'sub' is a folder", "kept")
    runtime = slack.client.runtime  # type: ignore[attr-defined]
    thread_id = ThreadKey("slack", TEAM_ID, "C7", sent.ts).id
    assert [f.name for f in runtime.store.list_files(thread_id)] == ["sub/a.txt"]


def test_ten_threads_at_once_each_get_their_own_results(slack: SlackSender, fake: FakeSlack) -> None:
    def start(i: int) -> Any:
        return slack.mention("C3", code(f"tag = 'thread-{i}'\nsecret = {i} * 1111\nprint(tag, secret)"))

    with ThreadPoolExecutor(10) as pool:
        sent = list(pool.map(start, range(10)))
    assert all(s.response.status_code == 200 for s in sent)
    assert max(s.response.elapsed.total_seconds() for s in sent) < 3  # Slack's ack deadline

    for i, s in enumerate(sent):
        text = wait_text(fake, "C3", s.ts, f"thread-{i} {i * 1111}", timeout=150)
        others = [f"thread-{j} " for j in range(10) if j != i]
        assert not any(o in text for o in others), text
    assert len({s.ts for s in sent}) == 10
    assert {m["thread_ts"] for m in fake.messages if m.get("bot_id")} == {s.ts for s in sent}


def test_rate_limited_posts_and_edits_are_retried_and_the_reply_lands(
    slack: SlackSender, fake: FakeSlack
) -> None:
    fake.refuse_streaming()  # the chat.update path
    fake.rate_limit("chat.postMessage", times=1, retry_after=1)
    fake.rate_limit("chat.update", times=1, retry_after=1)
    sent = slack.mention("C4", code("import time\nprint('posted')\ntime.sleep(1)\nprint('through', 6 * 7)"))
    wait_text(fake, "C4", sent.ts, "through 42")
    assert [c.status for c in fake.calls_of("chat.postMessage")] == [429, 200]
    assert [c.status for c in fake.calls_of("chat.update")][:2] == [429, 200]


def test_a_login_page_instead_of_the_file_is_explained_in_the_thread(
    slack: SlackSender, fake: FakeSlack
) -> None:
    fake.login_page_always = True
    attachment = fake.add_download("data.csv", b"a,b\n1,2\n")
    sent = slack.mention("C5", code("print('ran anyway')"), files=[attachment])
    text = wait_text(fake, "C5", sent.ts, "files:read", "ran anyway")
    assert "data.csv" in text
    runtime = slack.client.runtime  # type: ignore[attr-defined]
    assert runtime.store.list_files(ThreadKey("slack", TEAM_ID, "C5", sent.ts).id) == []


def test_long_output_is_split_and_very_long_output_is_attached(slack: SlackSender, fake: FakeSlack) -> None:
    fake.refuse_streaming()  # the chat.update path; streamed, a card shows the tail
    medium = slack.mention("C6", code("for i in range(120):\n    print(f'{i:04d} ' + 'y' * 50)"))
    huge = slack.mention("C6", code("for i in range(4000):\n    print(f'{i:05d} ' + 'z' * 40)"))

    text = wait_text(fake, "C6", medium.ts, "0000 ", "0119 ")
    parts = [m["text"] for m in fake.messages_in_thread("C6", medium.ts)]
    assert len(parts) == 2, text
    assert all(len(p) <= 3500 and p.count("```") % 2 == 0 for p in parts)

    files = fake.wait_for(lambda: fake.files_in_thread("C6", huge.ts), 90, "output.txt")
    assert [f.name for f in files] == ["output.txt"]
    assert b"03999 " + b"z" * 40 in files[0].content
    messages = [m for m in fake.messages_in_thread("C6", huge.ts) if m.get("bot_id")]
    assert len(messages) == 3
    assert "output.txt" in messages[-1]["text"] and "00000 " in messages[0]["text"]


def test_a_csv_question_through_the_llm_agent(api: Any, fake: FakeSlack) -> None:
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
        slack = SlackSender(api(**slack_settings(fake, **llm_settings)))
        attachment = fake.add_download("sales.csv", b"month,amount\njan,120.5\nfeb,80.25\nmar,99.25\n")
        sent = slack.mention(
            "C7", "What is the total amount in sales.csv? Plot it by month.", files=[attachment]
        )
        wait_text(fake, "C7", sent.ts, "total amount: 300.0", "The total amount is 300.0")
        fake.wait_for(lambda: fake.files_in_thread("C7", sent.ts), 30, "the figure")
    assert [f.name for f in fake.files_in_thread("C7", sent.ts)] == ["figure-1.png"]
    assert "sales.csv" in llm.requests[0]["messages"][-1]["content"] or "sales.csv" in json.dumps(
        llm.requests[0]
    )


def test_mention_mode_answers_dms_and_mentions_only(api: Any, fake: FakeSlack) -> None:
    slack = SlackSender(api(**slack_settings(fake, slack_reply_mode="mention")))
    dm = slack.send("message", "D1", code("print('dm', 1 + 1)"), channel_type="im")
    wait_text(fake, "D1", dm.ts, "dm 2")

    root = slack.mention("C8", code("y = 5"))
    wait_text(fake, "C8", root.ts, "Ran code")
    unmentioned = slack.send("message", "C8", code("print('unasked', y)"), thread_ts=root.ts)
    asked = slack.mention("C8", code("print('asked', y * 2)"), thread_ts=root.ts)
    assert unmentioned.response.status_code == asked.response.status_code == 200
    text = wait_text(fake, "C8", root.ts, "asked 10")
    assert "unasked" not in text
    assert all(m["thread_ts"] == dm.ts for m in fake.messages_in_thread("D1", dm.ts) if m.get("bot_id"))
