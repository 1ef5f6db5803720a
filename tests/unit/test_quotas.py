from pathlib import Path

import pytest

from controller.kernelstate import room
from controller.quotas import SNAPSHOT, QuotaExceeded, Quotas, Usage, check_upload, stored_usage, user_usage
from controller.stores.local import LocalStore
from tests.support.owners import owned_thread


def test_single_file_limit_message() -> None:
    with pytest.raises(QuotaExceeded, match=r"big.bin is 2.0 MiB, over the 1.0 MiB limit"):
        Quotas(max_file_bytes=2**20).check_file("big.bin", 2 * 2**20)


def test_thread_and_user_limits() -> None:
    q = Quotas(thread_max_files=2, thread_max_bytes=100, user_max_files=3, user_max_bytes=150)
    q.check_thread("a", Usage(2, 100))
    with pytest.raises(QuotaExceeded, match="limit of 2 files"):
        q.check_thread("c", Usage(3, 10))
    with pytest.raises(QuotaExceeded, match="would total"):
        q.check_thread("c", Usage(1, 101))
    with pytest.raises(QuotaExceeded, match="you already have your limit of 3 files"):
        q.check_user("d", Usage(4, 1))
    with pytest.raises(QuotaExceeded, match="your files would total"):
        q.check_user("d", Usage(1, 151))


def test_zero_means_unlimited() -> None:
    q = Quotas()
    q.check_file("x", 10**12)
    q.check_thread("x", Usage(10**6, 10**12))
    assert not q.per_user


def test_usage_replace_counts_overwrite_once() -> None:
    u = Usage(2, 100)
    assert u.replace(None, 10) == Usage(3, 110)
    assert u.replace(40, 10) == Usage(2, 70)


def _stored(tmp_path: Path, sizes: dict[str, dict[str, int]], users: dict[str, str]) -> LocalStore:
    """A store whose threads hold files of the given sizes (the key SNAPSHOT: saved state)."""
    store = LocalStore(tmp_path / "store")
    for tid, items in sizes.items():
        owned_thread(store, tid, users[tid])
        for name, size in items.items():
            src = tmp_path / "src"
            src.write_bytes(b"x" * size)
            if name == SNAPSHOT:
                store.put_blob(tid, SNAPSHOT, src)
            else:
                store.put_file(tid, name, src, "sha")
    return store


def test_saved_kernel_state_counts_as_bytes_not_as_a_file(tmp_path: Path) -> None:
    store = _stored(
        tmp_path,
        {"t-1": {"a": 10, SNAPSHOT: 30}, "t-2": {"b": 5, SNAPSHOT: 50}, "t-3": {SNAPSHOT: 99}},
        {"t-1": "u", "t-2": "u", "t-3": "someone else"},
    )
    assert stored_usage(store, "t-1") == Usage(1, 40)
    assert user_usage(store, "u", exclude="t-1") == Usage(1, 55)
    # Uploads see the thread's own snapshot and the user's other threads' too.
    with pytest.raises(QuotaExceeded, match="this thread's files would total"):
        check_upload(store, Quotas(thread_max_bytes=50), "t-1", "u", "new", 11)
    check_upload(store, Quotas(thread_max_bytes=50), "t-1", "u", "new", 10)
    with pytest.raises(QuotaExceeded, match="your files would total"):
        check_upload(store, Quotas(user_max_bytes=100), "t-1", "u", "new", 6)


def test_room_for_a_snapshot_is_what_every_byte_limit_leaves_beside_the_files(tmp_path: Path) -> None:
    store = _stored(
        tmp_path,
        {"t-1": {"a": 10, SNAPSHOT: 30}, "t-2": {"b": 5, SNAPSHOT: 50}},
        {"t-1": "u", "t-2": "u"},
    )
    assert room(store, "t-1", Quotas(), 1000) == 1000
    # The snapshot being replaced is not counted; the files are.
    assert room(store, "t-1", Quotas(thread_max_bytes=100), 1000) == 90
    assert room(store, "t-1", Quotas(thread_max_bytes=100), 20) == 20
    # The user's other threads (files and state) count only when the user is known.
    assert room(store, "t-1", Quotas(user_max_bytes=100), 1000, "u") == 100 - 55 - 10
    assert room(store, "t-1", Quotas(user_max_bytes=100), 1000) == 1000
    assert room(store, "t-1", Quotas(user_max_bytes=60), 1000, "u") == 0
