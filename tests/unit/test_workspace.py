import os
import shutil
import time
from pathlib import Path

import pytest

from controller.owners import OWNERS
from controller.quotas import SNAPSHOT, Quotas
from controller.stores.base import StoredFile
from controller.stores.local import LocalStore
from controller.workspace import WorkspaceSync
from tests.support.owners import owned_thread


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
    """The real local store, counting how often a user's threads are listed (the owner index)."""

    listings = 0

    def page_state(self, prefix: str, after: str | None, limit: int) -> list[str]:
        self.listings += prefix.startswith(f"{OWNERS}/")
        return super().page_state(prefix, after, limit)


def test_user_quota_counts_other_threads_only_when_something_is_uploaded(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "store")
    other = tmp_path / "o"
    other.write_text("12345")
    owned_thread(store, "t-0", "u")
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


def tmp_leftovers(root: Path) -> list[Path]:
    return list(root.rglob(".tmp-*"))


def restored(store: LocalStore, tmp_path: Path) -> tuple[Path, WorkspaceSync]:
    """A workspace freshly restored (empty) from ``store``, and its sync."""
    sync = sync_for(store, tmp_path / "ws")
    sync.restore()
    return tmp_path / "ws", sync


def test_a_folder_swapped_for_a_file_and_back_is_stored_each_time(store: LocalStore, tmp_path: Path) -> None:
    ws, sync = restored(store, tmp_path)
    (ws / "out").mkdir()
    (ws / "out" / "a.txt").write_text("a")
    assert sync.persist().changed == ["out/a.txt"]
    shutil.rmtree(ws / "out")
    (ws / "out").write_text("file")
    (ws / "zz.txt").write_text("z")
    result = sync.persist()
    assert (result.deleted, result.changed, result.refused) == (["out/a.txt"], ["out", "zz.txt"], {})
    (ws / "out").unlink()
    (ws / "out" / "deep").mkdir(parents=True)
    (ws / "out" / "deep" / "b.txt").write_text("b")
    result = sync.persist()
    assert (result.deleted, result.changed) == (["out"], ["out/deep/b.txt"])
    assert store.read_file("t-1", "out/deep/b.txt") == b"b"
    assert tmp_leftovers(tmp_path) == []


def test_one_file_that_cannot_be_stored_never_stops_the_others(store: LocalStore, tmp_path: Path) -> None:
    ws, sync = restored(store, tmp_path)
    src = tmp_path / "src"
    src.write_text("elsewhere")
    store.put_file("t-1", "x/y", src, "0" * 64)  # stored behind this sync's back: x is a folder there
    for name in ("a", "x", "zz"):
        (ws / name).write_text(name)
    result = sync.persist()
    assert result.changed == ["a", "zz"] and list(result.refused) == ["x"]
    assert str(tmp_path) not in result.refused["x"]
    assert tmp_leftovers(tmp_path) == []


def test_names_are_stored_in_nfc_and_a_restore_cycle_never_churns(store: LocalStore, tmp_path: Path) -> None:
    ws, sync = restored(store, tmp_path)
    (ws / "cafe\u0301.txt").write_text("decomposed")
    (ws / "a\\b.txt").write_text("backslash")
    assert sync.persist().changed == ["a\\b.txt", "caf\u00e9.txt"]
    (ws / "caf\u00e9.txt").write_text("composed twin")  # the same visible name twice
    result = sync.persist()
    assert result.changed == [] and "the same name" in result.refused["caf\u00e9.txt"]
    fresh = tmp_path / "fresh"
    again = sync_for(store, fresh)
    assert again.restore() == 2
    assert sorted(p.name for p in fresh.iterdir()) == ["a\\b.txt", "caf\u00e9.txt"]
    result = again.persist()
    assert (result.changed, result.deleted) == ([], [])


def test_restore_never_writes_through_a_link(store: LocalStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_text("stored")
    store.put_file("t-1", "d/f.txt", src, "0" * 64)
    outside = tmp_path / "outside"
    outside.mkdir()
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "d").symlink_to(outside)  # planted before a restore into a live workspace
    assert sync_for(store, ws).restore() == 0
    assert list(outside.iterdir()) == []


def test_a_file_swapped_for_a_link_after_the_scan_is_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("never stored")
    ws = tmp_path / "ws"  # the hook below needs it before restored() names it

    class RacingCode(LocalStore):
        """The real store; while it stores "a", code swaps "b" (already scanned) for a link."""

        def put_file(self, thread_id: str, name: str, source: Path, sha256: str) -> StoredFile:
            if name == "a":
                (ws / "b").unlink()
                (ws / "b").symlink_to(secret)
            return super().put_file(thread_id, name, source, sha256)

    store = RacingCode(tmp_path / "store")
    ws, sync = restored(store, tmp_path)
    (ws / "a").write_text("a")
    (ws / "b").write_text("b")
    result = sync.persist()
    assert result.changed == ["a"] and "symbolic link" in result.refused["b"]
    assert [f.name for f in store.list_files("t-1")] == ["a"]


def test_saved_kernel_state_takes_from_what_files_may_use(store: LocalStore, tmp_path: Path) -> None:
    (tmp_path / "state").write_bytes(b"s" * 60)
    store.put_blob("t-1", SNAPSHOT, tmp_path / "state")
    ws = tmp_path / "ws"
    sync = sync_for(store, ws, thread_max_bytes=100)
    sync.restore()
    (ws / "fits").write_bytes(b"x" * 40)
    (ws / "more").write_bytes(b"x" * 1)
    result = sync.persist()
    assert result.changed == ["fits"] and "would total" in result.refused["more"]
