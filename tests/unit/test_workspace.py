import os
import time
from pathlib import Path

import pytest

from controller.quotas import Quotas
from controller.stores.local import LocalStore
from controller.workspace import WorkspaceSync


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def sync_for(store: LocalStore, root: Path, **kw: object) -> WorkspaceSync:
    return WorkspaceSync(store, "t-1", root, Quotas(**kw))  # type: ignore[arg-type]


def test_persist_is_incremental(store: LocalStore, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    sync = sync_for(store, ws)
    sync.restore()
    (ws / "a.csv").write_text("1")
    (ws / "sub").mkdir()
    (ws / "sub" / "b.txt").write_text("2")
    first = sync.persist()
    assert first.changed == ["a.csv", "sub/b.txt"] and first.bytes == 2
    assert sync.persist().changed == []  # nothing changed: nothing uploaded
    os.utime(ws / "a.csv", (time.time() + 5, time.time() + 5))  # touched, same bytes
    assert sync.persist().changed == []
    (ws / "a.csv").write_text("changed")
    assert sync.persist().changed == ["a.csv"]
    assert store.read_file("t-1", "a.csv") == b"changed"


def test_deleted_files_leave_the_store_but_a_failed_restore_wipes_nothing(
    store: LocalStore, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    sync = sync_for(store, ws)
    sync.restore()
    (ws / "keep").write_text("k")
    (ws / "drop").write_text("d")
    sync.persist()
    (ws / "drop").unlink()
    assert sync.persist().deleted == ["drop"]
    assert [f.name for f in store.list_files("t-1")] == ["keep"]
    # A new sandbox whose workspace never got restored must not delete stored files.
    other = sync_for(store, tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    other._seen = {}  # what restore() leaves when nothing was restored
    assert other.persist().deleted == []
    assert [f.name for f in store.list_files("t-1")] == ["keep"]


def test_restore_roundtrip_and_adopted_baseline(store: LocalStore, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    sync = sync_for(store, ws)
    sync.restore()
    (ws / "data.bin").write_bytes(b"x" * 1000)
    sync.persist()
    fresh = tmp_path / "fresh"
    assert sync_for(store, fresh).restore() == 1
    assert (fresh / "data.bin").read_bytes() == b"x" * 1000
    # An adopted sandbox (no restore in this process) re-hashes once and uploads nothing unchanged.
    assert sync_for(store, fresh).persist().changed == []


def test_symlinks_are_never_followed(store: LocalStore, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    sync = sync_for(store, ws)
    sync.restore()
    secret = tmp_path / "host-secret"
    secret.write_text("do not upload")
    (ws / "link").symlink_to(secret)
    (ws / "__pycache__").mkdir()
    (ws / "__pycache__" / "m.pyc").write_bytes(b"x")
    assert sync.persist().changed == []


def test_quota_refusals_are_reported_not_uploaded(store: LocalStore, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    sync = sync_for(store, ws, max_file_bytes=10, thread_max_files=2)
    sync.restore()
    (ws / "big").write_bytes(b"x" * 11)
    for name in ("a", "b", "c"):
        (ws / name).write_text(name)
    result = sync.persist()
    assert result.changed == ["a", "b"]
    assert "over the" in result.refused["big"] and "limit of 2 files" in result.refused["c"]
    assert [f.name for f in store.list_files("t-1")] == ["a", "b"]


def test_expired_files_are_not_restored(store: LocalStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_text("old")
    store.put_file("t-1", "old.txt", src, "0" * 64)
    index = store._index("t-1")
    index["old.txt"]["modified"] = time.time() - 3 * 86400
    store._save_index("t-1", index)
    sync = WorkspaceSync(store, "t-1", tmp_path / "ws", Quotas(), file_ttl_days=2)
    assert sync.restore() == 0
    assert store.list_files("t-1") == []


def test_claims_are_exclusive_until_released(store: LocalStore) -> None:
    assert store.claim("slack-event/Ev1")
    assert not store.claim("slack-event/Ev1")
    store.release("slack-event/Ev1")
    assert store.claim("slack-event/Ev1")


class CountingStore(LocalStore):
    """The real local store, counting how often every thread is listed."""

    listings = 0

    def list_threads(self) -> list[str]:
        self.listings += 1
        return super().list_threads()


def test_user_quota_counts_other_threads_only_when_something_is_uploaded(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "store")
    other = tmp_path / "o"
    other.write_text("12345")
    store.put_json("t-0", "meta", {"user": "u"})
    store.put_file("t-0", "old.txt", other, "0" * 64)  # the user already holds 5 bytes elsewhere
    ws = tmp_path / "ws"
    sync = WorkspaceSync(store, "t-1", ws, Quotas(user_max_bytes=8), user="u")
    sync.restore()
    assert sync.persist().changed == [] and store.listings == 0  # nothing to upload: no listing
    (ws / "small").write_text("123")
    (ws / "big").write_text("1234")
    result = sync.persist()
    assert result.changed == ["small"]  # 5 + 3 fits in 8; "big" (5 + 4) does not
    assert "your files would total" in result.refused["big"]
    assert store.listings == 1  # once per persist, however many files
