"""SlackConfig: the typed view of the Slack settings, with the transport its mode needs."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from controller.config import Settings
from controller.slack.config import BotToken, HttpEvents, SlackConfig, SlackNotConfigured, SocketMode


def test_http_mode_carries_its_signing_secret_and_an_api_url_slack_sdk_can_join() -> None:
    s = Settings(
        slack_mode="http",
        slack_bot_token=SecretStr("xoxb-1"),
        slack_signing_secret=SecretStr("sig"),
        slack_api_url="http://127.0.0.1:9/api",
    )
    config = SlackConfig.from_settings(s)
    assert config.transport == HttpEvents("sig") and config.auth == BotToken("xoxb-1")
    assert config.api_url == "http://127.0.0.1:9/api/"


def test_socket_mode_carries_its_app_token() -> None:
    s = Settings(
        slack_mode="socket", slack_bot_token=SecretStr("xoxb-1"), slack_app_token=SecretStr("xapp-1")
    )
    config = SlackConfig.from_settings(s)
    assert config.transport == SocketMode("xapp-1") and config.api_url is None


def test_a_missing_token_or_slack_off_is_a_sentence_naming_the_setting() -> None:
    with pytest.raises(SlackNotConfigured, match="THREADBOX_SLACK_MODE=off"):
        SlackConfig.from_settings(Settings())
    s = Settings(slack_mode="http", slack_bot_token=SecretStr("xoxb-1"), slack_signing_secret=SecretStr("s"))
    broken = s.model_copy(update={"slack_signing_secret": None})  # past Settings' own check
    with pytest.raises(SlackNotConfigured, match="needs THREADBOX_SLACK_SIGNING_SECRET"):
        SlackConfig.from_settings(broken)
