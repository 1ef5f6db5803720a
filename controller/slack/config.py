"""What the Slack front-end needs from Settings, typed: no optional token left to assert on.

Settings already refuses a Slack mode without its tokens; this is the typed view of that
rule, so the front-end never holds the whole Settings (nor any other component's secrets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

from controller.config import Settings


class SlackNotConfigured(ValueError):
    """Slack is off, or a token its mode needs is missing; the message names the setting."""


@dataclass(frozen=True)
class HttpEvents:
    """Slack posts events to /slack/events, signed with this secret."""

    signing_secret: str


@dataclass(frozen=True)
class SocketMode:
    """The controller dials Slack over a websocket opened with this app-level token."""

    app_token: str


@dataclass(frozen=True)
class BotToken:
    """One workspace: every event is answered with this bot token."""

    token: str


@dataclass(frozen=True)
class OAuthApp:
    """Many workspaces: each installs the app through OAuth, and its bot token is kept in the
    thread store (controller/slack/installations.py)."""

    client_id: str
    client_secret: str
    scopes: tuple[str, ...]
    redirect_uri: str | None  # None: the one set in the Slack app


@dataclass(frozen=True)
class SlackConfig:
    auth: BotToken | OAuthApp
    transport: HttpEvents | SocketMode
    api_url: str | None  # None: slack.com; else ending in "/", which slack_sdk's urljoin needs
    reply_mode: Literal["mention", "all"]
    update_interval: float
    streaming: bool
    max_file_bytes: int
    max_code_bytes: int
    operator_channel: str | None = None  # where handed-off threads go; None: no handoff

    @classmethod
    def from_settings(cls, s: Settings) -> SlackConfig:
        if s.slack_mode == "off":
            raise SlackNotConfigured("Slack is off (THREADBOX_SLACK_MODE=off).")
        transport: HttpEvents | SocketMode
        if s.slack_mode == "http":
            transport = HttpEvents(_required(s.slack_signing_secret, "SLACK_SIGNING_SECRET", s.slack_mode))
        else:
            transport = SocketMode(_required(s.slack_app_token, "SLACK_APP_TOKEN", s.slack_mode))
        url = s.slack_api_url
        return cls(
            auth=_auth(s),
            transport=transport,
            api_url=url if url is None or url.endswith("/") else url + "/",
            reply_mode=s.slack_reply_mode,
            update_interval=s.slack_update_interval,
            streaming=s.slack_streaming,
            max_file_bytes=s.max_file_bytes,
            max_code_bytes=s.max_code_bytes,
            operator_channel=s.slack_operator_channel,
        )


def _auth(s: Settings) -> BotToken | OAuthApp:
    if s.slack_client_id is None:
        return BotToken(_required(s.slack_bot_token, "SLACK_BOT_TOKEN", s.slack_mode))
    secret = _required(s.slack_client_secret, "SLACK_CLIENT_SECRET", s.slack_mode)
    return OAuthApp(s.slack_client_id, secret, tuple(s.slack_scopes), s.slack_redirect_uri)


def _required(secret: SecretStr | None, name: str, mode: str) -> str:
    if secret is None:
        raise SlackNotConfigured(f"THREADBOX_SLACK_MODE={mode} needs THREADBOX_{name}.")
    return secret.get_secret_value()
