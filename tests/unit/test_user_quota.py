"""Per-user quotas given to a WorkspaceSync that cannot list the user's other threads (a pod's)."""

from dataclasses import asdict
from pathlib import Path

import pytest

from controller.quotas import Quotas, Usage, UserQuota
from controller.stores.local import LocalStore
from controller.workspace import OthersNeeded, WorkspaceSync
from tests.support.owners import owned_thread


def workspace(
    tmp_path: Path, name: str, store: LocalStore, user: str | None = None
) -> tuple[Path, WorkspaceSync]:
    """A restored workspace of thread ``name`` holding a.txt, b.txt and c.txt, not yet persisted."""
    root = tmp_path / name
    ws = WorkspaceSync(store, name, root, Quotas(thread_max_files=10, user_max_files=4), user=user)
    ws.restore()
    for f in ("a.txt", "b.txt", "c.txt"):
        (root / f).write_text(f)
    return root, ws


def test_a_given_count_refuses_exactly_what_the_local_backend_refuses(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    owned_thread(store, "t-0", "u")
    for f in ("x", "y"):
        (tmp_path / f).write_text(f)
        store.put_file("t-0", f, tmp_path / f, "0" * 64)
    _, local = workspace(tmp_path, "t-1", store, user="u")  # counts the other threads itself
    _, pod = workspace(tmp_path, "t-2", store)  # told the count, as a pod is
    by_controller = local.persist()
    by_pod = pod.persist(UserQuota(max_files=4, others=Usage(2, 2)))
    assert by_pod.changed == by_controller.changed == ["a.txt", "b.txt"]
    assert (
        by_pod.refused == by_controller.refused == {"c.txt": "c.txt: you already have your limit of 4 files"}
    )


def test_an_uncounted_quota_asks_before_saving_and_a_retry_completes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    root, pod = workspace(tmp_path, "t-1", store)
    assert pod.persist().changed == ["a.txt", "b.txt", "c.txt"]  # no quota given: no per-user check
    (root / "a.txt").unlink()
    (root / "d.txt").write_text("d")
    with pytest.raises(OthersNeeded):
        pod.persist(UserQuota(max_files=4))
    assert sorted(f.name for f in store.list_files("t-1")) == ["b.txt", "c.txt"]  # deleted, nothing saved
    result = pod.persist(UserQuota(max_files=4, others=Usage(2, 0)))
    assert result.changed == [] and result.deleted == []
    assert result.refused == {"d.txt": "d.txt: you already have your limit of 4 files"}
    assert pod.persist(UserQuota(max_files=0, max_bytes=0)).changed == [
        "d.txt"
    ]  # limits off: no count needed


def test_the_wire_form_round_trips_and_a_bad_one_says_what_is_wrong() -> None:
    quota = UserQuota(3, 2**20, Usage(1, 10))
    assert UserQuota.from_json(asdict(quota)) == quota
    assert UserQuota.from_json({"max_files": 3}) == UserQuota(3, 0, None)
    for raw, message in (
        ([], "user_quota must be an object"),
        ({"max_bytes": "1"}, "max_bytes must be a whole number"),
        ({"others": {"files": True}}, "files must be a whole number"),
        ({"others": 5}, "others must be an object"),
    ):
        with pytest.raises(ValueError, match=message):
            UserQuota.from_json(raw)
