"""Thread records: metadata in the store, so any replica can list and find threads."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from pydantic import BaseModel, Field

from controller.identity import ThreadKey
from controller.owners import OWNERS_INDEXED, owner_folder
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
    # The version is pinned at the first start, in the thread's storage (controller/profiles.py):
    # a record never changes, an upgrade does.
    profile: str | None = Field(
        default=None,
        description="The sandbox profile asked for at creation; unset: the chat's route, or the default.",
    )


def ensure_thread(
    store: ThreadStore, key: ThreadKey, name: str, user: str | None, profile: str | None = None
) -> ThreadRecord:
    existing = get_thread(store, key.id)
    if existing is not None:
        return existing
    record = new_record(key, name, user, profile=profile)
    save_record(store, record)
    return record


def new_record(
    key: ThreadKey, name: str, user: str | None, forked_from: str | None = None, profile: str | None = None
) -> ThreadRecord:
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
        profile=profile,
    )


def get_thread(store: ThreadStore, thread_id: str) -> ThreadRecord | None:
    meta: Any = store.get_json(thread_id, "meta")
    return ThreadRecord.model_validate(meta) if meta else None


def _owner_entry(record: ThreadRecord) -> str | None:
    return f"{owner_folder(record.user)}/{record.id}" if record.user else None


def save_record(store: ThreadStore, record: ThreadRecord) -> None:
    """Store a new thread's record, its owner's index entry first: a listing skips an entry
    whose record is missing, but would never find a record without an entry."""
    if entry := _owner_entry(record):
        store.put_state(entry, {})
    store.put_json(record.id, "meta", record.model_dump())


def delete_record(store: ThreadStore, record: ThreadRecord) -> None:
    """Delete the thread (files, history, record), then its owner's index entry."""
    store.delete_thread(record.id)
    if entry := _owner_entry(record):
        store.delete_state(entry)


def index_owners(store: ThreadStore) -> None:
    """Give each thread stored before the owner index covered it its entry: a read per thread,
    once per store. A thread an older controller makes afterwards (during a rolling upgrade)
    gets none: it stays out of its owner's listing and quota count; by name or id it is found
    as ever."""
    if store.get_state(OWNERS_INDEXED) is not None:
        return
    for thread_id in store.list_threads():
        record = get_thread(store, thread_id)
        if record and (entry := _owner_entry(record)):
            store.put_state(entry, {})
    store.put_state(OWNERS_INDEXED, {"at": time.time()})


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
