"""Where turns' usage is kept: one record per turn, under a name no other writer uses, so two
replicas recording at once never overwrite each other (as agent/history.py does for history).

- ``threads/<id>/usage/<name>``: the thread's turns (deleted with the thread);
- ``state/usage/u-<hash>/<day>/<name>``: a user's turns of one UTC day, for budgets and totals;
  they outlive the thread, so deleting threads does not give a budget back;
- ``state/usage/w-<hash>/<day>/<name>``: a workspace's (front-end and workspace) turns of a day.

Blocking (store calls): async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Iterable

from pydantic import ValidationError

from controller.stores.base import ThreadStore
from controller.usage.figures import TurnRecord

log = logging.getLogger(__name__)

FOLDER = "usage"  # in the thread, and the state prefix


def _hashed(kind: str, *parts: str) -> str:
    # State keys are lowercase slugs: a user or workspace name may be anything.
    return f"{kind}-{hashlib.sha256(chr(0).join(parts).encode()).hexdigest()[:32]}"


def user_key(user: str) -> str:
    return _hashed("u", user)


def workspace_key(source: str, workspace: str) -> str:
    return _hashed("w", source, workspace)


def _day(day: dt.date) -> str:
    return day.strftime("%Y%m%d")


class Ledger:
    def __init__(self, store: ThreadStore) -> None:
        self.store = store

    def record(self, record: TurnRecord, day: dt.date) -> None:
        name = f"{int(record.at * 1_000_000):020d}-{secrets.token_hex(4)}"
        value = record.model_dump()
        self.store.put_json(record.thread, f"{FOLDER}/{name}", value)
        for owner in self._owners(record):
            self.store.put_state(f"{FOLDER}/{owner}/{_day(day)}/{name}", value)

    @staticmethod
    def _owners(record: TurnRecord) -> list[str]:
        owners = [user_key(record.user)] if record.user else []
        if record.source and record.workspace:
            owners.append(workspace_key(record.source, record.workspace))
        return owners

    def of_thread(self, thread_id: str) -> list[TurnRecord]:
        return _parsed(self.store.list_json(thread_id, FOLDER).items())

    def of_days(self, owner: str, days: Iterable[dt.date]) -> list[TurnRecord]:
        """The turns of ``owner`` (``user_key`` or ``workspace_key``) on ``days``."""
        return [
            r for day in days for r in _parsed(self.store.list_state(f"{FOLDER}/{owner}/{_day(day)}").items())
        ]


def _parsed(raw: Iterable[tuple[str, object]]) -> list[TurnRecord]:
    records = []
    for name, value in raw:
        try:
            records.append(TurnRecord.model_validate(value))
        except ValidationError as exc:  # one bad record must not hide the others
            log.warning("ignoring unreadable usage record %s: %s", name, exc)
    return records
