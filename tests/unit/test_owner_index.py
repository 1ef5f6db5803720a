"""The owner index: each thread's entry under its owner (any source), written before its record
and removed after it, and given once to the threads stored before the index covered them."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import owners
from controller.identity import ThreadKey
from controller.owners import OWNERS_INDEXED, owned_threads, owner_folder
from controller.stores.local import LocalStore
from controller.threads import delete_record, ensure_thread, get_thread, index_owners, new_record


def test_threads_are_indexed_under_their_owner_whatever_their_source(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    mine = ensure_thread(store, ThreadKey("api", "dave", "console", "a"), "a", "dave")
    chat = ensure_thread(store, ThreadKey("slack", "T", "C", "1"), "1", "dave")
    ensure_thread(store, ThreadKey("api", "erin", "console", "b"), "b", "erin")
    assert store.page_state(owner_folder("dave"), None, 10) == sorted([mine.id, chat.id])
    assert owned_threads(store, "dave") == sorted([mine.id, chat.id])
    delete_record(store, mine)
    assert owned_threads(store, "dave") == [chat.id]
    assert get_thread(store, mine.id) is None


def test_a_users_threads_are_listed_past_one_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(owners, "PAGE", 2)
    store = LocalStore(tmp_path)
    ids = [ensure_thread(store, ThreadKey("api", "f", "console", str(i)), str(i), "f").id for i in range(5)]
    assert owned_threads(store, "f") == sorted(ids)


class Reads(LocalStore):
    reads = 0

    def get_json(self, thread_id: str, key: str) -> object:
        self.reads += 1
        return super().get_json(thread_id, key)


def test_threads_older_than_the_index_get_their_entries_once(tmp_path: Path) -> None:
    store = Reads(tmp_path)
    old = new_record(ThreadKey("api", "erin", "console", "old"), "old", "erin")
    store.put_json(old.id, "meta", old.model_dump())  # as a controller before the index wrote it
    chat = new_record(ThreadKey("slack", "T", "C", "2"), "2", "erin")
    store.put_json(chat.id, "meta", chat.model_dump())  # as a controller before chat entries did
    store.put_json("slack-abcdefghijklmnop", "meta", {})  # a broken record: no entry, no error
    index_owners(store)
    assert owned_threads(store, "erin") == sorted([old.id, chat.id])
    assert store.get_state(OWNERS_INDEXED) is not None and store.reads == 3
    index_owners(store)  # every later start: one state read, no thread read
    assert store.reads == 3
