"""The sandbox entrypoint's settings, library list, and what the image ships."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "sandbox-image"))  # as the image's PYTHONPATH=/opt/threadbox does

from threadbox_sandbox.preinstalled import preinstalled, requirement_names  # noqa: E402
from threadbox_sandbox.settings import SettingsError, from_env, load_connection, load_storage  # noqa: E402

from controller.quotas import Quotas  # noqa: E402


def test_defaults_are_the_pod_contracts_paths() -> None:
    s = from_env({"THREADBOX_THREAD_ID": "t-1"})
    assert s.secrets_dir == Path("/var/run/threadbox") and s.workspace == Path("/workspace")
    assert s.home == Path("/home/sandbox") and s.run_dir == Path("/tmp/threadbox")
    assert (s.server_host, s.server_port) == ("0.0.0.0", 8888)
    assert s.quotas == Quotas() and s.file_ttl_days == 0


def test_quotas_and_ttl_from_the_environment() -> None:
    s = from_env(
        {
            "THREADBOX_THREAD_ID": "t-1",
            "THREADBOX_MAX_FILE_BYTES": "100",
            "THREADBOX_THREAD_MAX_FILES": "3",
            "THREADBOX_THREAD_MAX_BYTES": "1000",
            "THREADBOX_FILE_TTL_DAYS": "1.5",
        }
    )
    assert s.quotas == Quotas(max_file_bytes=100, thread_max_files=3, thread_max_bytes=1000)
    assert s.file_ttl_days == 1.5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "THREADBOX_THREAD_ID is not set"),
        ({"THREADBOX_THREAD_ID": "t", "THREADBOX_THREAD_MAX_FILES": "many"}, "must be an integer"),
        ({"THREADBOX_THREAD_ID": "t", "THREADBOX_FILE_TTL_DAYS": "soon"}, "must be a number"),
    ],
)
def test_bad_environment_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        from_env(env)


def _secrets(tmp_path: Path, connection: object, storage: object) -> Path:
    (tmp_path / "connection.json").write_text(json.dumps(connection))
    (tmp_path / "storage.json").write_text(json.dumps(storage))
    return tmp_path


def test_storage_json_is_read_and_must_be_for_this_thread(tmp_path: Path) -> None:
    storage = {
        "endpoint": "minio:9000",
        "secure": False,
        "bucket": "tb",
        "prefix": "threads/t-1/",
        "access_key": "AK",
        "secret_key": "SK",
        "session_token": "TOK",
        "expires": 123.0,
    }
    env = {"THREADBOX_THREAD_ID": "t-1", "THREADBOX_SECRETS_DIR": str(_secrets(tmp_path, {}, storage))}
    got = load_storage(from_env(env))
    assert (got.endpoint, got.bucket, got.session_token, got.expires) == ("minio:9000", "tb", "TOK", 123.0)
    assert got.region == "us-east-1"
    with pytest.raises(SettingsError, match="but this pod serves 'threads/t-2/'"):
        load_storage(from_env({**env, "THREADBOX_THREAD_ID": "t-2"}))
    del storage["secret_key"]
    _secrets(tmp_path, {}, storage)
    with pytest.raises(SettingsError, match="lacks secret_key"):
        load_storage(from_env(env))


def test_connection_json_needs_its_key_and_ports(tmp_path: Path) -> None:
    env = {"THREADBOX_THREAD_ID": "t-1", "THREADBOX_SECRETS_DIR": str(tmp_path)}
    with pytest.raises(SettingsError, match="cannot read"):
        load_connection(from_env(env))
    ports = {f"{n}_port": 5555 + i for i, n in enumerate(["shell", "iopub", "stdin", "control", "hb"])}
    _secrets(tmp_path, {**ports, "ip": "0.0.0.0"}, {})
    with pytest.raises(SettingsError, match="no 'key'"):
        load_connection(from_env(env))
    _secrets(tmp_path, {**ports, "ip": "0.0.0.0", "key": "k"}, {})
    assert load_connection(from_env(env))["key"] == "k"
    (tmp_path / "connection.json").write_text("{not json")
    with pytest.raises(SettingsError, match="not valid JSON"):
        load_connection(from_env(env))


def test_preinstalled_lists_requirements_in_with_installed_versions(tmp_path: Path) -> None:
    assert requirement_names("# c\nnumpy\npandas>=2  # why\n\nipykernel>=7\n") == [
        "numpy",
        "pandas",
        "ipykernel",
    ]
    req = tmp_path / "requirements.in"
    req.write_text("pytest\n")  # installed in the test env
    [line] = preinstalled(req)
    assert re.fullmatch(r"pytest==\d+\.\d+.*", line)


def test_dockerfile_copies_exactly_the_listed_controller_modules() -> None:
    listed = [
        line.strip()
        for line in (ROOT / "sandbox-image/threadbox_sandbox/controller-modules.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    dockerfile = (ROOT / "Dockerfile.sandbox").read_text().replace("\\\n", " ")
    copied = [
        src
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for src in line.split()[1:-1]
        if src.startswith("controller/")
    ]
    assert sorted(copied) == sorted(listed)
    # The contract: workspace, the MinIO store and what they import; nothing else of the controller.
    assert {"controller/workspace.py", "controller/stores/minio.py"} <= set(listed)
    for rel in listed:
        assert (ROOT / rel).is_file(), rel


def test_modules_to_preimport_are_read_and_checked() -> None:
    env = {"THREADBOX_WARM": "1", "THREADBOX_PREIMPORT": "numpy, sklearn.linear_model"}
    assert from_env(env).preimport == ("numpy", "sklearn.linear_model")
    assert from_env({"THREADBOX_THREAD_ID": "t"}).preimport == ()
    with pytest.raises(SettingsError, match=r"THREADBOX_PREIMPORT: not module names: .*__import__"):
        from_env({**env, "THREADBOX_PREIMPORT": "__import__('os')"})
