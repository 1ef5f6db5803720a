"""The owner index: each API thread's entry under its owner, written before its record and
removed after it, and given once to the threads stored before the index existed."""

from __future__ import annotations

from pathlib import Path

from controller.identity import ThreadKey
from controller.stores.local import LocalStore
from controller.threads import (
    OWNERS_INDEXED,
    delete_record,
    ensure_thread,
    get_thread,
    index_owners,
    new_record,
    owner_folder,
)


def test_api_threads_are_indexed_under_their_owner_and_chat_threads_not(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    mine = ensure_thread(store, ThreadKey("api", "dave", "console", "a"), "a", "dave")
    ensure_thread(store, ThreadKey("slack", "T", "C", "1"), "1", "dave")
    assert store.page_state(owner_folder("dave"), None, 10) == [mine.id]
    delete_record(store, mine)
    assert store.page_state(owner_folder("dave"), None, 10) == []
    assert get_thread(store, mine.id) is None


class Reads(LocalStore):
    reads = 0

    def get_json(self, thread_id: str, key: str) -> object:
        self.reads += 1
        return super().get_json(thread_id, key)


def test_threads_older_than_the_index_get_their_entries_once(tmp_path: Path) -> None:
    store = Reads(tmp_path)
    old = new_record(ThreadKey("api", "erin", "console", "old"), "old", "erin")
    store.put_json(old.id, "meta", old.model_dump())  # as a controller before the index wrote it
    store.put_json("slack-abcdefghijklmnop", "meta", {})  # never read: not an API thread
    index_owners(store)
    assert store.page_state(owner_folder("erin"), None, 10) == [old.id]
    assert store.get_state(OWNERS_INDEXED) is not None and store.reads == 1
    index_owners(store)  # every later start: one state read, no thread read
    assert store.reads == 1
