"""Threads of a given user planted in a store as the controller stores them: the record and
the owner index entry that quotas and listings read (controller/threads.py)."""

from __future__ import annotations

import time

from controller.stores.base import ThreadStore
from controller.threads import ThreadRecord, save_record


def owned_thread(store: ThreadStore, thread_id: str, user: str) -> ThreadRecord:
    record = ThreadRecord(
        id=thread_id,
        name=thread_id,
        source="api",
        workspace=user,
        channel="console",
        thread=thread_id,
        user=user,
        created=time.time(),
    )
    save_record(store, record)
    return record
