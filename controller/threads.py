"""Thread records: metadata in the store, so any replica can list and find threads."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from pydantic import BaseModel, Field

from controller.identity import ThreadKey
from controller.stores.base import ThreadStore


class ThreadRecord(BaseModel):
    id: str
    name: str
    source: str
    workspace: str
    channel: str
    thread: str
    user: str | None = None
    created: float
    forked_from: str | None = Field(default=None, description="The id of the thread this one is a fork of.")


def ensure_thread(store: ThreadStore, key: ThreadKey, name: str, user: str | None) -> ThreadRecord:
    existing = get_thread(store, key.id)
    if existing is not None:
        return existing
    record = new_record(key, name, user)
    store.put_json(key.id, "meta", record.model_dump())
    return record


def new_record(key: ThreadKey, name: str, user: str | None, forked_from: str | None = None) -> ThreadRecord:
    """The record of a thread made now (not stored yet)."""
    return ThreadRecord(
        id=key.id,
        name=name,
        source=key.source,
        workspace=key.workspace,
        channel=key.channel,
        thread=key.thread,
        user=user,
        created=time.time(),
        forked_from=forked_from,
    )


def get_thread(store: ThreadStore, thread_id: str) -> ThreadRecord | None:
    meta: Any = store.get_json(thread_id, "meta")
    return ThreadRecord.model_validate(meta) if meta else None


class RecentRecords:
    """The thread records this replica read last, at most ``limit`` of them, so that a thread
    whose sandbox is live here stays usable while storage is down, and a listing of threads
    reads from the store only the records it has not read yet (a record never changes).

    The store stays the truth: a record is remembered only from a read that found it, and
    forgotten once a read finds the thread gone. Callers still check the caller's right to it.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._records: OrderedDict[str, ThreadRecord] = OrderedDict()

    def remember(self, record: ThreadRecord) -> None:
        self._records[record.id] = record
        self._records.move_to_end(record.id)  # the least recently read goes first
        if len(self._records) > self._limit:
            self._records.popitem(last=False)

    def forget(self, thread_id: str) -> None:
        self._records.pop(thread_id, None)

    def get(self, thread_id: str) -> ThreadRecord | None:
        return self._records.get(thread_id)
