"""Many workspaces: two installs through OAuth on the chat port, each answered with its own token.

The real Bolt OAuth flow and the real slack_sdk, against the fake Slack's authorize page and
``oauth.v2.access``; installations and states live in a real MinIO store, which a restarted
controller reads back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from controller.identity import ThreadKey
from controller.runtime import Runtime, build_runtime
from controller.slack.installations import installation_key
from devkit.fake_slack import FakeSlack
from devkit.fake_slack_oauth import CLIENT_ID, CLIENT_SECRET
from devkit.ports import free_port
from devkit.slack_events import SIGNING_SECRET, SlackSender, code, envelope, message_body
from tests.support.server import serve_runtime

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SCOPES = "app_mentions:read,chat:write,files:read,files:write"


@dataclass
class Controller:
    runtime: Runtime
    chat: httpx.Client
    redirect_uri: str


@pytest.fixture
def settings(make_settings: Any, fake: FakeSlack, minio: Any) -> Any:
    store = minio.store()  # a bucket of this test's own, shared by every controller it starts
    return lambda **more: make_settings(
        slack_mode="http",
        slack_signing_secret=SIGNING_SECRET,
        slack_client_id=CLIENT_ID,
        slack_client_secret=CLIENT_SECRET,
        slack_scopes=SCOPES,
        slack_api_url=fake.url,
        slack_update_interval=0.3,
        store="minio",
        minio_endpoint=minio.endpoint,
        minio_access_key=minio.access_key,
        minio_secret_key=minio.secret_key,
        minio_bucket=store.bucket,
        **more,
    )


@contextmanager
def controller(settings: Any, **more: Any) -> Iterator[Controller]:
    chat_port = free_port()
    redirect_uri = f"http://127.0.0.1:{chat_port}/slack/oauth_redirect"
    runtime = build_runtime(
        settings(port=free_port(), chat_port=chat_port, slack_redirect_uri=redirect_uri, **more)
    )
    with serve_runtime(runtime) as (_, chat_url), httpx.Client(base_url=chat_url, timeout=30) as chat:
        yield Controller(runtime, chat, redirect_uri)


def install(ctl: Controller, team: str) -> tuple[str, str]:
    """A browser installing the app in ``team``: returns the redirect it followed and its cookie."""
    start = ctl.chat.get("/slack/install", params={"team": team})
    assert start.status_code == 302, start.text
    # The state cookie is Secure, so a browser returns it over https only: sent by hand here.
    cookie = start.headers["set-cookie"].split(";")[0]
    approved = httpx.get(start.headers["location"], timeout=30)  # the fake approves at once
    assert approved.status_code == 302, approved.text
    back = approved.headers["location"]
    assert back.startswith(ctl.redirect_uri)
    done = ctl.chat.get(back, headers={"Cookie": cookie})
    assert done.status_code == 200, done.text
    return back, cookie


def mention(ctl: Controller, fake: FakeSlack, team: str, channel: str, text: str, **kw: Any) -> str:
    """Deliver a mention of ``team``'s bot; returns the message ts (the thread)."""
    bot = next(w.bot_user_id for w in fake.oauth.installed() if w.team_id == team)
    body = message_body("app_mention", channel, f"<@{bot}> {text}", team=team, **kw)
    assert SlackSender(ctl.chat, chat=ctl.chat).deliver(body).status_code == 200
    return str(body["event"]["ts"])


def token_of(fake: FakeSlack, team: str) -> str:
    return next(f"Bearer {w.token}" for w in fake.oauth.installed() if w.team_id == team)


def tokens_used_in(fake: FakeSlack, channel: str) -> set[str]:
    """The tokens of every Web API call made into one channel."""
    return {
        c.headers.get("authorization", "")
        for c in fake.calls
        if channel in (c.params.get("channel"), c.params.get("channel_id"))
    }


def replied(fake: FakeSlack, channel: str, ts: str, needle: str) -> None:
    fake.wait_for(lambda: needle in fake.text_in_thread(channel, ts), 120, f"{needle!r} in {channel} {ts}")


def test_two_workspaces_install_and_each_is_answered_with_its_own_token(
    settings: Any, fake: FakeSlack
) -> None:
    with controller(settings) as ctl:
        install(ctl, "T0AAA")
        install(ctl, "T0BBB")
        assert token_of(fake, "T0AAA") != token_of(fake, "T0BBB")
        a = mention(ctl, fake, "T0AAA", "CA", code("print('from A', 6 * 7)"))
        b = mention(ctl, fake, "T0BBB", "CB", code("print('from B', 6 * 9)"))
        replied(fake, "CA", a, "from A 42")
        replied(fake, "CB", b, "from B 54")
        mention(ctl, fake, "T0AAA", "CA", code("print('again A')"), thread_ts=a)
        replied(fake, "CA", a, "again A")
        threads = {ThreadKey("slack", "T0AAA", "CA", a).id, ThreadKey("slack", "T0BBB", "CB", b).id}
        assert set(ctl.runtime.store.list_threads()) == threads
    assert tokens_used_in(fake, "CA") == {token_of(fake, "T0AAA")}
    assert tokens_used_in(fake, "CB") == {token_of(fake, "T0BBB")}
    checks = [c.headers["authorization"] for c in fake.calls_of("auth.test")]
    assert checks.count(token_of(fake, "T0AAA")) == 2  # at install, then once for both events


def test_a_restarted_controller_keeps_both_installations_and_their_own_threads_and_quotas(
    settings: Any, fake: FakeSlack
) -> None:
    with controller(settings) as ctl:
        install(ctl, "T0AAA")
        install(ctl, "T0BBB")
    ts = "1700000000.000100"  # the same channel and ts in both workspaces: still two threads
    listing = code("print('csv:', sorted(f for f in __import__('os').listdir('.') if f.endswith('.csv')))")
    with controller(settings, thread_max_files=1) as ctl:  # a new app and runtime, the same store
        for team in ("T0AAA", "T0BBB"):  # each thread takes one file: a shared thread would refuse B's
            attached = fake.add_download(f"{team}.csv", b"x\n1\n")
            mention(ctl, fake, team, "C1", listing, ts=ts, files=[attached])
        replied(fake, "C1", ts, "csv: ['T0AAA.csv']")
        replied(fake, "C1", ts, "csv: ['T0BBB.csv']")
        threads = {ThreadKey("slack", team, "C1", ts).id for team in ("T0AAA", "T0BBB")}
        assert set(ctl.runtime.store.list_threads()) == threads
    assert tokens_used_in(fake, "C1") == {token_of(fake, "T0AAA"), token_of(fake, "T0BBB")}
    downloads = {
        c.params["path"].split("/")[-1]: c.headers["authorization"] for c in fake.calls_of("download")
    }
    assert downloads == {"T0AAA.csv": token_of(fake, "T0AAA"), "T0BBB.csv": token_of(fake, "T0BBB")}


def test_a_replayed_forged_or_cookieless_redirect_is_refused(settings: Any, fake: FakeSlack) -> None:
    with controller(settings) as ctl:
        back, cookie = install(ctl, "T0AAA")
        assert ctl.chat.get(back, headers={"Cookie": cookie}).status_code == 401  # state used up
        forged = "0123456789abcdef0123456789abcdef"
        forged_back = f"{ctl.redirect_uri}?code=x&state={forged}"
        forged_cookie = {"Cookie": f"slack-app-oauth-state={forged}"}
        assert ctl.chat.get(forged_back, headers=forged_cookie).status_code == 401  # never issued
        assert ctl.chat.get(forged_back).status_code == 400  # no cookie binding it to this browser
        # A fresh, valid state with an already used code: Slack refuses the code, and so do we.
        fresh = ctl.chat.get("/slack/install", params={"team": "T0BBB"}).headers["set-cookie"]
        fresh_cookie = fresh.split(";")[0]
        state = fresh_cookie.split("=", 1)[1]
        reused = back.split("&state=")[0] + f"&state={state}"
        assert ctl.chat.get(reused, headers={"Cookie": fresh_cookie}).status_code == 401
    assert [w.team_id for w in fake.oauth.installed()] == ["T0FAKE", "T0AAA"]


def test_an_uninstalled_workspace_is_forgotten_and_asked_to_reinstall(settings: Any, fake: FakeSlack) -> None:
    with controller(settings) as ctl:
        install(ctl, "T0AAA")
        install(ctl, "T0BBB")
        sender = SlackSender(ctl.chat, chat=ctl.chat)
        assert sender.deliver(envelope({"type": "app_uninstalled"}, "T0AAA")).status_code == 200
        store = ctl.runtime.store
        gone = installation_key(None, "T0AAA")
        fake.wait_for(lambda: store.get_state(gone) is None, 30, "the uninstalled workspace's record to go")
        assert store.get_state(installation_key(None, "T0BBB")) is not None
        for team in ("T0AAA", "T0ZZZ"):  # uninstalled, and never installed
            body = message_body("app_mention", "C9", f"<@U0BOT{team}> {code('print(1)')}", team=team)
            answer = sender.deliver(body)
            # Bolt authorizes before the ack, so no listener ran: nothing to wait for.
            assert answer.status_code == 200 and "reinstall" in answer.text
        assert store.list_threads() == []
    assert not [c for c in fake.calls if "C9" in (c.params.get("channel"), c.params.get("channel_id"))]
