"""OAuth for many workspaces: its settings, and installations and states kept in the thread store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from slack_sdk.oauth.installation_store.models.installation import Installation

from controller.config import Settings
from controller.runtime import build_runtime
from controller.slack.config import OAuthApp, SlackConfig
from controller.slack.installations import (
    STATES,
    StoreInstallations,
    StoreOAuthStates,
    installation_key,
)
from controller.slack.oauth import INSTALL_PATH, REDIRECT_PATH, authorization_url
from controller.stores.local import LocalStore

OAUTH: dict[str, Any] = {
    "slack_mode": "http",
    "slack_signing_secret": "sig",
    "slack_client_id": "111.222",
    "slack_client_secret": "shh",
    "slack_scopes": "chat:write, app_mentions:read",
}


def test_oauth_settings_give_an_oauth_app_instead_of_a_bot_token() -> None:
    config = SlackConfig.from_settings(
        Settings(**OAUTH, slack_redirect_uri="https://tb.example/slack/oauth_redirect")
    )
    assert config.auth == OAuthApp(
        "111.222", "shh", ("chat:write", "app_mentions:read"), "https://tb.example/slack/oauth_redirect"
    )


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"slack_client_secret": None}, "slack_mode=http with OAuth needs THREADBOX_SLACK_CLIENT_SECRET"),
        ({"slack_client_id": None}, "needs THREADBOX_SLACK_CLIENT_ID"),
        ({"slack_scopes": ""}, "needs THREADBOX_SLACK_SCOPES"),
        ({"slack_signing_secret": None}, "needs THREADBOX_SLACK_SIGNING_SECRET"),
        ({"slack_bot_token": "xoxb-1"}, "set THREADBOX_SLACK_BOT_TOKEN .* not both"),
        ({"slack_mode": "socket", "slack_app_token": "xapp-1"}, "needs THREADBOX_SLACK_MODE=http"),
    ],
)
def test_a_half_oauth_configuration_is_refused_naming_the_setting(given: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        Settings(**(OAUTH | given))


def test_a_bot_token_alone_still_configures_one_workspace() -> None:
    Settings(slack_mode="http", slack_bot_token=SecretStr("xoxb-1"), slack_signing_secret=SecretStr("sig"))
    with pytest.raises(ValidationError, match="slack_mode=http needs THREADBOX_SLACK_BOT_TOKEN"):
        Settings(slack_mode="http", slack_signing_secret=SecretStr("sig"))


def test_the_authorize_page_sits_beside_the_web_api() -> None:
    assert authorization_url(None) is None  # Bolt's default, https://slack.com/oauth/v2/authorize
    assert authorization_url("https://slack.com/api/") == "https://slack.com/oauth/v2/authorize"
    assert authorization_url("http://127.0.0.1:9/") == "http://127.0.0.1:9/oauth/v2/authorize"


def test_oauth_mode_serves_the_install_paths_on_the_chat_port(tmp_path: Path) -> None:
    runtime = build_runtime(Settings(**OAUTH, data_dir=tmp_path, sandbox_python=Path("/usr/bin/python3")))
    paths = {getattr(r, "path", None) for router in runtime.chat_routers for r in router.routes}
    assert {"/slack/events", INSTALL_PATH, REDIRECT_PATH} <= paths


def _installation(team: str, token: str, enterprise: str | None = None, **kw: Any) -> Installation:
    return Installation(
        user_id="U0ADMIN", team_id=team, enterprise_id=enterprise, bot_token=token, bot_id="B1", **kw
    )


async def test_each_workspace_finds_its_own_token_in_the_store_after_a_restart(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    first = StoreInstallations(store)
    await first.async_save(_installation("T0A", "xoxb-a", bot_scopes="chat:write,files:read"))
    await first.async_save(_installation("T0B", "xoxb-b"))

    again = StoreInstallations(LocalStore(tmp_path))  # a new replica, or the controller restarted
    bot_a = await again.async_find_bot(enterprise_id=None, team_id="T0A")
    bot_b = await again.async_find_bot(enterprise_id=None, team_id="T0B")
    assert bot_a is not None and bot_b is not None
    assert (bot_a.bot_token, bot_a.bot_scopes, bot_b.bot_token) == (
        "xoxb-a",
        ["chat:write", "files:read"],
        "xoxb-b",
    )
    assert await again.async_find_bot(enterprise_id=None, team_id="T0C") is None
    found = await again.async_find_installation(enterprise_id=None, team_id="T0A", user_id="U0ADMIN")
    assert found is not None and found.bot_token == "xoxb-a"
    assert await again.async_find_installation(enterprise_id=None, team_id="T0A", user_id="U0OTHER") is None
    assert set(store.list_state("slack/installations")) == {
        "slack/installations/none-t0a",
        "slack/installations/none-t0b",
    }


async def test_an_uninstalled_workspace_loses_its_token(tmp_path: Path) -> None:
    installs = StoreInstallations(LocalStore(tmp_path))
    await installs.async_save(_installation("T0A", "xoxb-a"))
    await installs.async_save(_installation("T0B", "xoxb-b"))
    await installs.async_delete_all(enterprise_id=None, team_id="T0A")  # what app_uninstalled calls
    assert await installs.async_find_bot(enterprise_id=None, team_id="T0A") is None
    assert await installs.async_find_bot(enterprise_id=None, team_id="T0B") is not None


async def test_an_org_wide_install_is_found_by_its_enterprise(tmp_path: Path) -> None:
    installs = StoreInstallations(LocalStore(tmp_path))
    await installs.async_save(_installation(None, "xoxb-org", enterprise="E0ORG", is_enterprise_install=True))  # type: ignore[arg-type]
    bot = await installs.async_find_bot(enterprise_id="E0ORG", team_id="T0ANY", is_enterprise_install=True)
    assert bot is not None and bot.bot_token == "xoxb-org"


def test_store_keys_come_only_from_slack_ids() -> None:
    assert installation_key("E0ORG", None) == "slack/installations/e0org-none"
    with pytest.raises(ValueError, match="not a Slack id"):
        installation_key(None, "../../tokens")


async def test_a_state_is_good_once_and_only_until_it_expires(tmp_path: Path) -> None:
    now = [1000.0]
    states = StoreOAuthStates(LocalStore(tmp_path), expiration_seconds=600, clock=lambda: now[0])
    state = await states.async_issue()
    other = StoreOAuthStates(LocalStore(tmp_path), expiration_seconds=600, clock=lambda: now[0])
    assert await other.async_consume(state)  # issued by one replica, consumed by another
    assert not await states.async_consume(state)  # replayed

    late = await states.async_issue()
    now[0] += 601
    assert not await states.async_consume(late)
    assert not await states.async_consume(late)  # nor does expiring leave it usable
    assert not await states.async_consume("0" * 32)  # never issued
    for forged in ("", "../../tokens/x", "A" * 32, "slack/oauth-states/x"):
        assert not await states.async_consume(forged)


async def test_unused_states_are_deleted_once_expired(tmp_path: Path) -> None:
    now = [1000.0]
    store = LocalStore(tmp_path)
    states = StoreOAuthStates(store, expiration_seconds=600, clock=lambda: now[0])
    old = await states.async_issue()
    now[0] += 300
    recent = await states.async_issue()
    now[0] += 301
    newest = await states.async_issue()  # anyone may ask for a state: the expired one goes
    assert set(store.list_state(STATES)) == {f"{STATES}/{recent}", f"{STATES}/{newest}"}
    assert not await states.async_consume(old)
    assert await states.async_consume(recent)
