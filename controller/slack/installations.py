"""Slack installations and OAuth states in the thread store, so every replica sees them.

Bolt keeps both in local files by default: a second replica would never find a workspace
that was installed through the first, and a restarted pod would forget them all. Here an
installation is one state record per workspace (``slack/installations/<enterprise>-<team>``),
and it holds the workspace's bot token: the store must be as private as the tokens are.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from controller.stores.base import ThreadStore

log = logging.getLogger(__name__)

_SLACK_ID = re.compile(r"^[A-Z0-9]{1,64}$")
_STATE = re.compile(r"^[0-9a-f]{32}$")
STATES = "slack/oauth-states"


def installation_key(enterprise_id: str | None, team_id: str | None) -> str:
    """Slack ids are uppercase letters and digits, so lowercasing keeps them distinct and
    makes them valid state keys; an org-wide install has no team."""
    return f"slack/installations/{_slug(enterprise_id)}-{_slug(team_id)}"


def _slug(slack_id: str | None) -> str:
    if slack_id is None:
        return "none"
    if not _SLACK_ID.match(slack_id):
        raise ValueError(f"not a Slack id: {slack_id!r}")
    return slack_id.lower()


class StoreInstallations(AsyncInstallationStore):
    """The latest installation of each workspace; Bolt asks it for the bot token of every
    event (``installation_store_bot_only``), and deletes it when the app is uninstalled."""

    def __init__(self, store: ThreadStore) -> None:
        self.store = store

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        key = installation_key(installation.enterprise_id, installation.team_id)
        await asyncio.to_thread(self.store.put_state, key, dict(installation.__dict__))

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        key = installation_key(enterprise_id, None if is_enterprise_install else team_id)
        data = await asyncio.to_thread(self.store.get_state, key)
        if data is None or (user_id is not None and data.get("user_id") != user_id):
            return None
        return Installation(**data)

    async def async_find_bot(
        self, *, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False
    ) -> Bot | None:
        found = await self.async_find_installation(
            enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=is_enterprise_install
        )
        return found.to_bot() if found is not None and found.bot_token else None

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        # The record is the bot's installation: without its token nothing of it is usable.
        await asyncio.to_thread(self.store.delete_state, installation_key(enterprise_id, team_id))

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        await self.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)


class StoreOAuthStates(AsyncOAuthStateStore):
    """OAuth ``state`` values: issued at /slack/install, consumed once at the redirect, and
    refused after ``expiration_seconds``. A claim in the store makes consumption single-use
    even when two replicas get the same redirect at once. Anyone may GET /slack/install, so
    each issue first deletes the expired states: unused ones never pile up past what one
    expiry period's requests leave."""

    def __init__(
        self, store: ThreadStore, expiration_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.expiration_seconds = expiration_seconds
        self.clock = clock

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        await asyncio.to_thread(self._prune)
        state = secrets.token_hex(16)
        await asyncio.to_thread(self.store.put_state, _state_key(state), {"issued": self.clock()})
        return state

    def _prune(self) -> None:
        for key, record in self.store.list_state(STATES).items():
            if self._expired(record):
                self.store.delete_state(key)

    def _expired(self, record: dict[str, Any]) -> bool:
        return self.clock() - float(record["issued"]) > self.expiration_seconds

    async def async_consume(self, state: str) -> bool:
        if not _STATE.match(state or ""):
            return False  # anything a browser sends lands here, never in a store key
        record = await asyncio.to_thread(self.store.get_state, _state_key(state))
        if record is None or not await asyncio.to_thread(self.store.claim, f"slack-oauth-state/{state}"):
            return False
        await asyncio.to_thread(self.store.delete_state, _state_key(state))
        return not self._expired(record)


def _state_key(state: str) -> str:
    return f"{STATES}/{state}"
