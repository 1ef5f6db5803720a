"""Per-thread conversation history, kept in the ThreadStore so it outlives sandboxes and restarts.

History is a list of exchanges: one user message and everything the turn added after it
(assistant text, tool calls and their results). Trimming drops whole exchanges, oldest
first, so a tool result is never separated from the call it answers.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controller.stores.base import ThreadStore

log = logging.getLogger(__name__)

VERSION = 1
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
        raw = self.store.get_json(thread_id, self.key)
        if raw is None:
            return []
        try:
            if raw["version"] != VERSION:
                raise ValueError(f"version {raw['version']}")
            exchanges = [Exchange(float(e["at"]), list(e["messages"])) for e in raw["exchanges"]]
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ignoring unreadable %s of thread %s: %s", self.key, thread_id, exc)
            return []
        return trim(exchanges, self.budget, self.ttl_days)

    def append(self, thread_id: str, exchange: Exchange) -> list[Exchange]:
        """Add one exchange to the stored history, trim it, save it; returns what was saved."""
        clean = Exchange(exchange.at, scrub(exchange.messages))
        kept = trim([*self.load(thread_id), clean], self.budget, self.ttl_days)
        self.store.put_json(
            thread_id,
            self.key,
            {"version": VERSION, "exchanges": [{"at": e.at, "messages": e.messages} for e in kept]},
        )
        return kept
