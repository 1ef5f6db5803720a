"""The fake Slack's workspaces and OAuth: the authorize page and ``oauth.v2.access``.

Each installed workspace has its own bot token, bot user and team; the fake answers a Web
API call only with a token it issued, and ``auth.test`` says whose it is. The flow follows
https://docs.slack.dev/authentication/installing-with-oauth: ``GET oauth/v2/authorize``
(the installer approves at once, in the workspace named by ``team``) redirects back with a
single-use ``code``, which ``oauth.v2.access`` exchanges for the bot token, given the app's
client id and secret (HTTP Basic auth, as slack_sdk sends them, or form fields) and the same
``redirect_uri`` the authorize request named.
"""

from __future__ import annotations

import base64
import itertools
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

CLIENT_ID = "1111.2222"
CLIENT_SECRET = "fake-client-secret"
APP_ID = "A0THREADBOX"
INSTALLER = "U0ADMIN"


@dataclass(frozen=True)
class Workspace:
    team_id: str
    name: str
    token: str
    bot_user_id: str
    bot_id: str
    scope: str = ""


@dataclass(frozen=True)
class _Grant:
    workspace: Workspace
    redirect_uri: str | None


class FakeOAuth:
    def __init__(self, first: Workspace) -> None:
        self.redirect_url = ""  # the Slack app's configured redirect URL, used when none is sent
        self._by_token = {first.token: first}
        self._codes: dict[str, _Grant] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def workspace_of(self, headers: dict[str, str]) -> Workspace | None:
        """The workspace whose bot token authorizes the call, if any."""
        auth = headers.get("authorization", "")
        with self._lock:
            return self._by_token.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None

    def installed(self) -> list[Workspace]:
        with self._lock:
            return list(self._by_token.values())

    def authorize(self, query: dict[str, str]) -> tuple[int, str]:
        """``GET oauth/v2/authorize``: (302, the redirect back with code and state) or (400, why)."""
        redirect = query.get("redirect_uri") or self.redirect_url
        if query.get("client_id") != CLIENT_ID or not redirect:
            return 400, "invalid_client_id" if redirect else "no redirect_uri and none configured"
        team = query.get("team") or "T0OTHER"
        with self._lock:
            n = next(self._ids)
            token, bot = f"xoxb-{team.lower()}-{n}", f"U0BOT{team}"
            workspace = Workspace(team, f"Workspace {team}", token, bot, f"B0{team}", query.get("scope", ""))
            self._codes[f"code-{n}"] = _Grant(workspace, query.get("redirect_uri"))
        back = {"code": f"code-{n}", "state": query.get("state", "")}
        return 302, f"{redirect}{'&' if '?' in redirect else '?'}{urlencode(back)}"

    def access(self, p: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        """``oauth.v2.access``: the bot token of the workspace the code was granted in."""
        client_id, secret = _client(p, headers)
        if client_id != CLIENT_ID:
            return {"ok": False, "error": "invalid_client_id"}
        if secret != CLIENT_SECRET:
            return {"ok": False, "error": "bad_client_secret"}
        with self._lock:
            grant = self._codes.pop(str(p.get("code")), None)  # single use
            if grant is None:
                return {"ok": False, "error": "invalid_code"}
            if grant.redirect_uri is not None and p.get("redirect_uri") != grant.redirect_uri:
                return {"ok": False, "error": "bad_redirect_uri"}
            self._by_token[grant.workspace.token] = grant.workspace
        return _access_response(grant.workspace)


def auth_test(workspace: Workspace) -> dict[str, Any]:
    return {
        "ok": True,
        "url": f"https://{workspace.team_id.lower()}.slack.com/",
        "team": workspace.name,
        "user": "threadbox",
        "team_id": workspace.team_id,
        "user_id": workspace.bot_user_id,
        "bot_id": workspace.bot_id,
        "is_enterprise_install": False,
    }


def _client(p: dict[str, Any], headers: dict[str, str]) -> tuple[str, str]:
    auth = headers.get("authorization", "")
    if auth.startswith("Basic "):
        client_id, _, secret = base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
        return client_id, secret
    return str(p.get("client_id", "")), str(p.get("client_secret", ""))


def _access_response(w: Workspace) -> dict[str, Any]:
    return {
        "ok": True,
        "access_token": w.token,
        "token_type": "bot",
        "scope": w.scope,
        "bot_user_id": w.bot_user_id,
        "app_id": APP_ID,
        "team": {"id": w.team_id, "name": w.name},
        "enterprise": None,
        "is_enterprise_install": False,
        "authed_user": {"id": INSTALLER},
    }
