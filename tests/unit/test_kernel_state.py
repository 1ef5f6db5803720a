"""The kernel's side of kept state (sandbox-image's state.py) and the line the user reads."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from controller.kernelstate import BLOB, Saved, note, stored
from controller.stores.base import StoreUnavailable
from controller.stores.local import LocalStore

IMAGE = Path(__file__).resolve().parents[2] / "sandbox-image"
sys.path.insert(0, str(IMAGE))  # as the image's PYTHONPATH does

from threadbox_sandbox.state import STATE_FILE, KernelState  # noqa: E402


def kernel(**names: Any) -> Any:
    hidden = {"In": [], "exit": object()}
    return SimpleNamespace(
        user_ns={**hidden, "_": 1, "_i1": "x", **names}, user_ns_hidden=hidden, execution_count=3
    )


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_a_namespace_comes_back_with_what_could_not_be_kept_named(home: Path) -> None:
    conn = socket.socket()
    try:
        saved = json.loads(
            KernelState(kernel(x=1, f=lambda v: v + 1, json=json, conn=conn, gen=(i for i in range(0)))).save(
                10**6
            )
        )
    finally:
        conn.close()
    assert sorted(saved["saved"]) == ["f", "json", "x"] and saved["skipped"] == {
        "conn": "socket",
        "gen": "generator",
    }
    assert (home / STATE_FILE).stat().st_size == saved["bytes"]
    fresh = kernel()
    summary = json.loads(KernelState(fresh).load())
    assert fresh.user_ns["x"] == 1 and fresh.user_ns["f"](1) == 2 and fresh.user_ns["json"] is json
    assert not (home / STATE_FILE).exists()  # loaded once, then the stored copy is the one kept
    assert (
        note(summary) == "Kernel state: restored f, json, x; could not keep conn (socket), gen (generator)."
    )


def test_over_the_cap_nothing_is_kept_and_a_second_save_with_no_cell_run_is_unchanged(home: Path) -> None:
    state = KernelState(kernel(big=bytes(5000), small=1))
    assert json.loads(state.save(1000))["over_cap"] is True
    assert json.loads(state.save(1000)) == {"unchanged": True}
    fresh = kernel()
    summary = json.loads(KernelState(fresh).load())
    assert "big" not in fresh.user_ns and "small" not in fresh.user_ns
    assert note(summary) == (
        "Kernel state: nothing was kept when this sandbox stopped: the variables took more than 1,000 bytes "
        "(THREADBOX_STATE_MAX_BYTES, or what the storage quotas leave beside the files)."
    )


def test_nothing_saved_says_nothing() -> None:
    assert json.loads(KernelState(kernel()).load()) == {}
    assert note({}) is None
    assert Saved(unchanged=True).describe() == "variables unchanged since the last save"


def test_the_controller_says_whether_a_thread_has_saved_variables(tmp_path: Path) -> None:
    """``stored`` spares a freshly claimed pod the fetch; when the store cannot say, the pod looks."""
    store = LocalStore(tmp_path / "store")
    blob = tmp_path / "state"
    blob.write_bytes(b"pickled")
    store.put_blob("kept", BLOB, blob)
    assert stored(store, "kept") is True
    assert stored(store, "fresh") is False

    class Down(LocalStore):
        def blob_size(self, thread_id: str, key: str) -> int | None:
            raise StoreUnavailable("MinIO is down")

    assert stored(Down(tmp_path / "store"), "fresh") is True
