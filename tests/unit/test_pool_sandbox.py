"""The entrypoint's side of the warm pool: a warm pod has no thread until POST /bind."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "sandbox-image"))  # as the image's PYTHONPATH=/opt/threadbox does

from threadbox_sandbox.server import BindConflict, Workspace  # noqa: E402
from threadbox_sandbox.settings import SettingsError, from_env, parse_storage  # noqa: E402

STORAGE: dict[str, Any] = {
    "endpoint": "minio:9000",
    "bucket": "tb",
    "prefix": "threads/t-1/",
    "access_key": "AK",
    "secret_key": "SK",
    "session_token": "TOK",
}


def test_a_warm_pod_starts_without_a_thread_and_a_claimed_one_reads_it_from_its_secret(
    tmp_path: Path,
) -> None:
    env = {"THREADBOX_WARM": "1", "THREADBOX_SECRETS_DIR": str(tmp_path)}
    assert from_env(env).thread_id is None
    (tmp_path / "thread_id").write_text("t-1\n")  # what a claim adds to the Secret
    assert from_env(env).thread_id == "t-1"
    assert from_env({**env, "THREADBOX_THREAD_ID": "t-2"}).thread_id == "t-2"
    with pytest.raises(SettingsError, match="THREADBOX_THREAD_ID is not set"):
        from_env({"THREADBOX_SECRETS_DIR": str(tmp_path)})  # not warm: a thread is required


def test_bound_credentials_must_be_for_the_thread_being_bound() -> None:
    assert parse_storage(STORAGE, "t-1").session_token == "TOK"
    with pytest.raises(SettingsError, match="but this pod serves 'threads/t-2/'"):
        parse_storage(STORAGE, "t-2")
    with pytest.raises(SettingsError, match="not a thread id"):
        parse_storage({**STORAGE, "prefix": "threads/../"}, "..")


def test_a_bound_workspace_uses_the_given_credentials_until_its_secret_mount_has_them(
    tmp_path: Path,
) -> None:
    settings = from_env({"THREADBOX_WARM": "1", "THREADBOX_SECRETS_DIR": str(tmp_path)})
    workspace = Workspace(settings)
    with pytest.raises(SettingsError, match="not bound"):
        workspace.restore()
    given = parse_storage(STORAGE, "t-1")
    workspace.thread_id, workspace._bound = "t-1", given  # what bind() sets before restoring
    assert workspace._load_storage() == given
    rotated = {**STORAGE, "session_token": "NEW"}
    (tmp_path / "storage.json").write_text(json.dumps(rotated))  # kubelet synced the Secret
    assert workspace._load_storage() == dataclasses.replace(given, session_token="NEW")


def test_a_bound_sandbox_refuses_another_thread(tmp_path: Path) -> None:
    settings = from_env({"THREADBOX_THREAD_ID": "t-1", "THREADBOX_SECRETS_DIR": str(tmp_path)})
    with pytest.raises(BindConflict, match="already serves thread t-1"):
        Workspace(settings).bind("t-2", parse_storage({**STORAGE, "prefix": "threads/t-2/"}, "t-2"))
