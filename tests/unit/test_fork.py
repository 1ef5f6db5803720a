from pathlib import Path

import pytest

from controller.execution import Checkpoint
from controller.fork import MAX_NAME, Copied, ThreadExists, copy_thread, default_name, describe, fork_record
from controller.identity import ThreadKey
from controller.owners import owner_folder
from controller.quotas import SNAPSHOT, QuotaExceeded, Quotas
from controller.stores.local import LocalStore
from controller.threads import ThreadRecord, ensure_thread, get_thread


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path / "store")
    source = tmp_path / "bytes"
    source.write_bytes(b"x" * 100)
    original = ensure_thread(store, ThreadKey("api", "alice", "console", "orig"), "orig", "alice")
    store.put_file(original.id, "a.txt", source, "sha-a")
    store.put_blob(original.id, SNAPSHOT, source)
    store.put_json(original.id, "history/0001-a", {"at": 1, "messages": [{"role": "user", "content": "hi"}]})
    return store


def records(store: LocalStore, name: str = "copy") -> tuple[ThreadRecord, ThreadRecord]:
    original = get_thread(store, ThreadKey("api", "alice", "console", "orig").id)
    assert original is not None
    return original, fork_record(original, ThreadKey("api", "alice", "console", name), name, "alice")


def test_a_fork_copies_files_state_and_conversation_and_is_recorded_last(store: LocalStore) -> None:
    original, target = records(store)
    assert copy_thread(store, Quotas(), original, target, with_state=True) == Copied(1, 100, True)
    assert get_thread(store, target.id) == target and target.forked_from == original.id
    assert [(f.name, f.sha256) for f in store.list_files(target.id)] == [("a.txt", "sha-a")]
    assert store.blob_size(target.id, SNAPSHOT) == 100
    assert store.list_json(target.id, "history") == store.list_json(original.id, "history") != {}
    with pytest.raises(ThreadExists):
        copy_thread(store, Quotas(), original, target, with_state=True)


def test_without_state_only_the_files_are_copied(store: LocalStore) -> None:
    original, target = records(store)
    assert copy_thread(store, Quotas(), original, target, with_state=False).state is False
    assert store.blob_size(target.id, SNAPSHOT) is None


def test_a_copy_over_a_quota_writes_nothing(store: LocalStore) -> None:
    original, target = records(store)
    for quotas in (Quotas(thread_max_bytes=150), Quotas(user_max_bytes=350)):
        with pytest.raises(QuotaExceeded):  # 200 bytes more, the snapshot's included
            copy_thread(store, quotas, original, target, with_state=True)
        assert target.id not in store.list_threads()
    copy_thread(store, Quotas(thread_max_bytes=150), original, target, with_state=False)


def test_a_copy_cut_short_leaves_no_thread(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    original, target = records(store)

    def broken(*_: object) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(store, "copy_blob", broken)
    with pytest.raises(OSError, match="disk full"):
        copy_thread(store, Quotas(), original, target, with_state=True)
    assert target.id not in store.list_threads()


def test_default_names_fit_and_differ() -> None:
    long = default_name("n" * MAX_NAME)
    assert len(long) == MAX_NAME and "-fork-" in long
    assert default_name("demo") != default_name("demo")


def test_the_note_says_what_the_fork_got() -> None:
    copied = Copied(2, 1000, True)
    assert describe(None, copied) == (
        "Forked with 2 file(s), 1,000 bytes and the variables saved when the original's sandbox last stopped."
    )
    assert "no variables" in describe(None, Copied(2, 1000, False))
    assert describe(Checkpoint(True, None), copied).endswith(
        "the variables of its running sandbox, saved just now."
    )
    assert describe(Checkpoint(False, "its kernel is not running"), Copied(2, 1000, False)) == (
        "Forked with 2 file(s), 1,000 bytes as last stored (its latest could not be saved) only, "
        "without variables: its kernel is not running."
    )


def test_a_record_write_that_fails_leaves_no_owner_index_entry(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    original, target = records(store)
    put_json = store.put_json

    def record_lost(thread_id: str, key: str, value: object) -> None:
        if key == "meta":  # after its owner's index entry was written
            raise OSError("disk full")
        put_json(thread_id, key, value)

    monkeypatch.setattr(store, "put_json", record_lost)
    with pytest.raises(OSError, match="disk full"):
        copy_thread(store, Quotas(), original, target, with_state=True)
    assert target.id not in store.list_threads()
    assert store.page_state(owner_folder("alice"), None, 10) == [original.id]
