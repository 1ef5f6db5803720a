"""The same contract for both ThreadStore implementations, against a real MinIO."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.stores.base import NotInStore, StoreUnavailable, ThreadStore
from controller.stores.local import LocalStore
from controller.stores.minio import MinioStore
from controller.workspace import sha256_file

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", "minio"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ThreadStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    minio: Any = request.getfixturevalue("minio")
    return minio.store()  # type: ignore[no-any-return]


def test_files_json_threads_and_claims(store: ThreadStore, tmp_path: Path) -> None:
    src = tmp_path / "src.csv"
    src.write_text("a,b\n1,2\n")
    sha = sha256_file(src)
    stored = store.put_file("t-1", "dir/données.csv", src, sha)
    assert (stored.size, stored.sha256) == (8, sha)
    [listed] = store.list_files("t-1")
    assert (listed.name, listed.size, listed.sha256) == ("dir/données.csv", 8, sha)
    assert store.read_file("t-1", "dir/données.csv") == b"a,b\n1,2\n"
    with (tmp_path / "x.csv").open("wb") as out:
        store.download_file("t-1", "dir/données.csv", out)
    assert (tmp_path / "x.csv").read_text() == "a,b\n1,2\n"
    with pytest.raises(NotInStore):
        store.read_file("t-1", "missing")
    with pytest.raises(NotInStore):
        store.read_file("t-2", "dir/données.csv")  # another thread never sees it

    store.put_json("t-1", "meta", {"user": "u1"})
    store.put_json("t-2", "meta", {"user": "u2"})
    assert store.get_json("t-1", "meta") == {"user": "u1"}
    assert store.get_json("t-1", "history") is None
    assert store.list_threads() == ["t-1", "t-2"]

    assert store.claim("slack-event/Ev1") and not store.claim("slack-event/Ev1")
    store.release("slack-event/Ev1")
    assert store.claim("slack-event/Ev1")

    store.delete_file("t-1", "dir/données.csv")
    assert store.list_files("t-1") == []
    store.delete_thread("t-2")
    assert store.list_threads() == ["t-1"]


def test_records_in_a_folder_list_in_name_order_and_delete(store: ThreadStore) -> None:
    for name in ("b", "a", "c"):
        store.put_json("t-1", f"history/{name}", {"n": name})
    store.put_json("t-1", "history", {"whole": True})  # a record beside the folder is not in it
    store.put_json("t-2", "history/a", {"n": "other thread"})
    assert store.list_json("t-1", "history") == {"a": {"n": "a"}, "b": {"n": "b"}, "c": {"n": "c"}}
    store.delete_json("t-1", "history/b")
    store.delete_json("t-1", "history/b")  # gone already is fine
    assert list(store.list_json("t-1", "history")) == ["a", "c"]
    assert store.list_json("t-1", "nothing") == {}
    assert store.get_json("t-1", "history") == {"whole": True}


def test_copies_to_another_thread_keep_bytes_and_hashes(store: ThreadStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 1000)
    sha = sha256_file(src)
    store.put_file("t-1", "dir/a.bin", src, sha)
    store.put_blob("t-1", "kernel-state", src)
    assert store.blob_size("t-1", "kernel-state") == 1000 and store.blob_size("t-2", "kernel-state") is None
    copied = store.copy_file("t-1", "dir/a.bin", "t-2")
    assert (copied.name, copied.size, copied.sha256) == ("dir/a.bin", 1000, sha)
    [listed] = store.list_files("t-2")
    assert (listed.name, listed.size, listed.sha256) == ("dir/a.bin", 1000, sha)
    assert store.copy_blob("t-1", "kernel-state", "t-2") == 1000
    assert store.blob_size("t-2", "kernel-state") == 1000
    store.put_file("t-2", "dir/a.bin", tmp_path / "src.bin", sha)
    store.delete_file("t-2", "dir/a.bin")  # the copy is the copy's: the original keeps its file
    assert store.read_file("t-1", "dir/a.bin") == b"x" * 1000
    with pytest.raises(NotInStore):
        store.copy_file("t-1", "missing", "t-2")
    with pytest.raises(NotInStore):
        store.copy_blob("t-3", "kernel-state", "t-2")


def test_unavailable_minio_is_a_clear_error() -> None:
    store = MinioStore.connect("127.0.0.1:9", "x", "y", "bucket")  # port 9: nothing listens
    with pytest.raises(StoreUnavailable, match="unavailable"):
        store.check()
    with pytest.raises(StoreUnavailable):
        store.list_files("t-1")


def test_state_is_apart_from_threads(store: ThreadStore) -> None:
    store.put_json("t-1", "meta", {"user": "u1"})
    store.put_state("tokens/abc", {"user": "u1"})
    store.put_state("tokens/def", {"user": "u2"})
    store.put_state("other/x", [1])
    assert store.get_state("tokens/abc") == {"user": "u1"}
    assert store.get_state("tokens/missing") is None and store.get_state("nothing/here") is None
    assert store.list_state("tokens") == {"tokens/abc": {"user": "u1"}, "tokens/def": {"user": "u2"}}
    assert store.list_state("none") == {}
    assert store.list_threads() == ["t-1"], "state must never be listed as a thread"
    store.put_state("tokens/abc", {"user": "u3"})
    assert store.get_state("tokens/abc") == {"user": "u3"}
    store.delete_state("tokens/abc")
    store.delete_state("tokens/abc")  # deleting twice is not an error
    assert list(store.list_state("tokens")) == ["tokens/def"]
    for bad in ("../threads/t-1/meta", "Tokens/x", "tokens//x", "/abs", "tokens/x.json"):
        with pytest.raises(ValueError, match="bad state key"):
            store.get_state(bad)


def test_local_state_never_follows_symlinks(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.json").write_text('{"planted": true}')
    (tmp_path / "store" / "state").mkdir(parents=True)
    (tmp_path / "store" / "state" / "tokens").symlink_to(outside)
    with pytest.raises(OSError):
        store.get_state("tokens/x")
    with pytest.raises(OSError):
        store.put_state("tokens/y", {"user": "u"})
    assert not (outside / "y.json").exists()
    (tmp_path / "store" / "state" / "tokens").unlink()
    store.put_state("tokens/real", {"user": "u"})
    (tmp_path / "store" / "state" / "tokens" / "link.json").symlink_to(outside / "x.json")
    with pytest.raises(OSError):
        store.get_state("tokens/link")
    assert store.list_state("tokens") == {"tokens/real": {"user": "u"}}
    mode = (tmp_path / "store" / "state" / "tokens" / "real.json").stat().st_mode & 0o777
    assert mode == 0o600


def test_pages_of_thread_ids_and_state_names_start_after_a_name(store: ThreadStore) -> None:
    for tid in ("api-b", "api-a", "slack-c", "api-d"):
        store.put_json(tid, "meta", {})
    assert store.page_threads(None, 2) == ["api-a", "api-b"]
    assert store.page_threads("api-b", 10) == ["api-d", "slack-c"]
    assert store.page_threads("api-bz", 1) == ["api-d"]  # after need not be an id
    assert store.page_threads("slack-c", 5) == []
    for name in ("y", "x", "z"):
        store.put_state(f"owners/u1/{name}", {})
    store.put_state("owners/u1/deeper/w", {})  # in a folder below: not a name of this one
    store.put_state("owners/u2/a", {})
    assert store.page_state("owners/u1", None, 5) == ["x", "y", "z"]
    assert store.page_state("owners/u1", "x", 1) == ["y"]
    assert store.page_state("owners/none", None, 5) == []
