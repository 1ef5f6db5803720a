"""What the entrypoint is told: environment variables plus the mounted secrets directory.

The pod contract (docs/sandbox-pod-contract.md) fixes the names. The controller
sets nothing else, so every value here has a default or fails loudly at start.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.extensions import module_names
from controller.outputcap import DEFAULT_MAX_OUTPUT_BYTES
from controller.quotas import Quotas

# Thread ids are DNS-1123 labels (controller/identity.py); anything else in a bind is refused.
THREAD_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Added to a warm pod's Secret when it is claimed, so a restarted container is still bound.
THREAD_FILE = "thread_id"


class SettingsError(Exception):
    """The pod was started without something the entrypoint needs; the message says what."""


@dataclass(frozen=True)
class Storage:
    """The scoped MinIO credentials from storage.json (never the controller's own)."""

    endpoint: str
    bucket: str
    prefix: str
    access_key: str
    secret_key: str
    session_token: str | None
    secure: bool
    expires: float
    region: str


@dataclass(frozen=True)
class Settings:
    thread_id: str | None  # None: a warm pod, bound to a thread later by POST /bind
    secrets_dir: Path
    workspace: Path
    home: Path
    run_dir: Path
    quotas: Quotas
    file_ttl_days: float
    server_host: str
    server_port: int
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    policy_check_seconds: float | None = None  # None: no policy to prove (not in a pod)
    state_cap: int | None = None  # the controller keeps the kernel's variables, at most this
    preimport: tuple[str, ...] = ()  # modules the kernel imports at its start (a warm pod's)

    @property
    def connection_file(self) -> Path:
        return self.secrets_dir / "connection.json"

    @property
    def storage_file(self) -> Path:
        return self.secrets_dir / "storage.json"


def _int(env: Mapping[str, str], name: str, default: int = 0) -> int:
    raw = env.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _thread_id(env: Mapping[str, str], secrets_dir: Path) -> str | None:
    """The thread from the environment; a warm pod (THREADBOX_WARM=1) has none until it is claimed."""
    thread_id = env.get("THREADBOX_THREAD_ID", "").strip()
    if thread_id:
        return thread_id
    if env.get("THREADBOX_WARM") != "1":
        raise SettingsError("THREADBOX_THREAD_ID is not set")
    try:
        return (secrets_dir / THREAD_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    secrets_dir = Path(env.get("THREADBOX_SECRETS_DIR") or "/var/run/threadbox")
    home = Path(env.get("HOME") or "/home/sandbox")
    tmp = Path(env.get("TMPDIR") or "/tmp")
    return Settings(
        thread_id=_thread_id(env, secrets_dir),
        secrets_dir=secrets_dir,
        workspace=Path(env.get("THREADBOX_WORKSPACE") or "/workspace"),
        home=home,
        # The secrets mount is read-only and the root filesystem too: the kernel's copy of
        # the connection file lives on the writable /tmp emptyDir.
        run_dir=tmp / "threadbox",
        quotas=Quotas(
            max_file_bytes=_int(env, "THREADBOX_MAX_FILE_BYTES"),
            thread_max_files=_int(env, "THREADBOX_THREAD_MAX_FILES"),
            thread_max_bytes=_int(env, "THREADBOX_THREAD_MAX_BYTES"),
        ),
        file_ttl_days=_float(env, "THREADBOX_FILE_TTL_DAYS"),
        # Not part of the controller's env: the pod always uses 0.0.0.0:8888. Tests that run
        # several entrypoints on one host override them.
        server_host=env.get("THREADBOX_SERVER_HOST") or "0.0.0.0",
        server_port=_int(env, "THREADBOX_SERVER_PORT", 8888),
        max_output_bytes=_int(env, "THREADBOX_MAX_OUTPUT_BYTES", DEFAULT_MAX_OUTPUT_BYTES),
        policy_check_seconds=(
            _float(env, "THREADBOX_POLICY_CHECK_SECONDS")
            if env.get("THREADBOX_POLICY_CHECK_SECONDS")
            else None
        ),
        state_cap=_int(env, "THREADBOX_STATE_MAX_BYTES") if env.get("THREADBOX_STATE_MAX_BYTES") else None,
        preimport=_modules(env, "THREADBOX_PREIMPORT"),
    )


def _modules(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    try:
        return tuple(module_names(env.get(name, "")))
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise SettingsError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path} must hold a JSON object")
    return data


def load_connection(settings: Settings) -> dict[str, Any]:
    info = _read_json(settings.connection_file)
    for key in ("key", "shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"):
        if not info.get(key):
            raise SettingsError(f"{settings.connection_file} has no {key!r}")
    return info


def load_storage(settings: Settings, thread_id: str | None = None) -> Storage:
    thread_id = thread_id or settings.thread_id
    if thread_id is None:
        raise SettingsError("this warm sandbox is not bound to a thread")
    return parse_storage(_read_json(settings.storage_file), thread_id, str(settings.storage_file))


def parse_storage(raw: dict[str, Any], thread_id: str, source: str = "storage.json") -> Storage:
    """The storage.json payload, checked against the thread it must serve."""
    if not THREAD_ID.match(thread_id):
        raise SettingsError(f"{thread_id!r} is not a thread id")
    missing = [k for k in ("endpoint", "bucket", "access_key", "secret_key") if not raw.get(k)]
    if missing:
        raise SettingsError(f"{source} lacks {', '.join(missing)}")
    expected = f"threads/{thread_id}/"
    prefix = str(raw.get("prefix") or expected)
    # The credentials only reach one thread's prefix; a mismatch means the pod got another
    # thread's Secret, and every sync would fail with AccessDenied, so refuse early.
    if prefix != expected:
        raise SettingsError(f"storage.json is for prefix {prefix!r}, but this pod serves {expected!r}")
    return Storage(
        endpoint=str(raw["endpoint"]),
        bucket=str(raw["bucket"]),
        prefix=prefix,
        access_key=str(raw["access_key"]),
        secret_key=str(raw["secret_key"]),
        session_token=str(raw["session_token"]) if raw.get("session_token") else None,
        secure=bool(raw.get("secure", False)),
        expires=float(raw.get("expires") or 0),
        # Optional (not in the contract's payload): MinIO's default region unless it was configured.
        region=str(raw.get("region") or "us-east-1"),
    )
