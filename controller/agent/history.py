"""Per-thread conversation history, kept in the ThreadStore so it outlives sandboxes and restarts.

History is a list of exchanges: one user message and everything the turn added after it
(assistant text, tool calls and their results). Trimming drops whole exchanges, oldest
first, so a tool result is never separated from the call it answers.

Each exchange is its own record, ``<key>/<time>-<random>``: a turn only ever creates a
name no other writer uses, so two replicas writing at once (a Lease lost to a stall) can
never overwrite each other's exchange, as a load-modify-write of one record could.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controller.stores.base import ThreadStore

log = logging.getLogger(__name__)

LEGACY_VERSION = 1  # every exchange in one record, ``<key>``: read, then split up
CHARS_PER_TOKEN = 4
DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,[A-Za-z0-9+/=]+")


@dataclass
class Exchange:
    at: float
    messages: list[dict[str, Any]]

    def tokens(self) -> int:
        return len(json.dumps(self.messages)) // CHARS_PER_TOKEN + 1


def scrub(value: Any) -> Any:
    """Replace inline base64 images anywhere in a message: they would eat the budget and the store."""
    if isinstance(value, str):
        return DATA_URL.sub("[image]", value)
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    return value


def trim(
    exchanges: Sequence[Exchange], budget: int, ttl_days: float, now: float | None = None
) -> list[Exchange]:
    """The newest exchanges that fit in ``budget`` tokens, none older than ``ttl_days`` (0: no limit)."""
    now = time.time() if now is None else now
    fresh = [e for e in exchanges if not ttl_days or now - e.at <= ttl_days * 86400]
    kept: list[Exchange] = []
    total = 0
    for exchange in reversed(fresh):
        total += exchange.tokens()
        if total > budget:
            break
        kept.append(exchange)
    return kept[::-1]


def messages_of(exchanges: Sequence[Exchange]) -> list[dict[str, Any]]:
    return [m for e in exchanges for m in e.messages]


class History:
    """Loads and saves one kind of history (``key``) with the thread's budget and time limit."""

    def __init__(self, store: ThreadStore, key: str, budget: int, ttl_days: float) -> None:
        self.store = store
        self.key = key
        self.budget = budget
        self.ttl_days = ttl_days

    def load(self, thread_id: str) -> list[Exchange]:
        self._split_legacy(thread_id)
        return trim(list(self._stored(thread_id).values()), self.budget, self.ttl_days)

    def append(self, thread_id: str, exchange: Exchange) -> list[Exchange]:
        """Store one exchange, drop the ones trimming leaves out; returns what is kept.

        A turn loads before it appends, so a legacy record is already split by then."""
        self._put(thread_id, Exchange(exchange.at, scrub(exchange.messages)))
        stored = self._stored(thread_id)
        kept = trim(list(stored.values()), self.budget, self.ttl_days)
        kept_ids = {id(e) for e in kept}
        for name, old in stored.items():
            if id(old) not in kept_ids:  # only older ones: a record written since is not in ``stored``
                self.store.delete_json(thread_id, f"{self.key}/{name}")
        return kept

    def _put(self, thread_id: str, exchange: Exchange, name: str | None = None) -> None:
        name = name or f"{exchange.at:017.6f}-{secrets.token_hex(4)}"
        self.store.put_json(
            thread_id, f"{self.key}/{name}", {"at": exchange.at, "messages": exchange.messages}
        )

    def _stored(self, thread_id: str) -> dict[str, Exchange]:
        """Every stored exchange by record name, oldest first (names start with the time)."""
        stored = {}
        for name, raw in self.store.list_json(thread_id, self.key).items():
            try:
                stored[name] = Exchange(float(raw["at"]), list(raw["messages"]))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("ignoring unreadable %s/%s of thread %s: %s", self.key, name, thread_id, exc)
        return stored

    def _split_legacy(self, thread_id: str) -> None:
        """One record per exchange from a history written whole by an older version."""
        raw = self.store.get_json(thread_id, self.key)
        if raw is None:
            return
        try:
            if raw["version"] != LEGACY_VERSION:
                raise ValueError(f"version {raw['version']}")
            exchanges = [Exchange(float(e["at"]), list(e["messages"])) for e in raw["exchanges"]]
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("dropping unreadable %s of thread %s: %s", self.key, thread_id, exc)
            exchanges = []
        for i, exchange in enumerate(exchanges):  # fixed names: two replicas splitting agree
            self._put(thread_id, exchange, f"{exchange.at:017.6f}-legacy{i}")
        self.store.delete_json(thread_id, self.key)
