"""The lean sandbox environment that local kernels run from.

Built with uv from ``sandbox-image/requirements.txt`` (the same file the sandbox
image installs) into a venv cached by the file's hash. Never the controller's
own venv: that one is ~4x slower to start a kernel from and holds controller
packages that user code must not see.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

CACHE = Path(os.environ.get("THREADBOX_CACHE", Path.home() / ".cache" / "threadbox"))


class SandboxEnvError(RuntimeError):
    pass


def requirements_file() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (
        here / "_sandbox" / "requirements.txt",
        here.parent / "sandbox-image" / "requirements.txt",
    ):
        if candidate.exists():
            return candidate
    raise SandboxEnvError("sandbox-image/requirements.txt not found; is threadbox installed from the repo?")


def _uv() -> str:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except ImportError:
        found = shutil.which("uv")
        if not found:
            raise SandboxEnvError("uv is needed to build the sandbox environment: pip install uv") from None
        return found


def env_dir(requirements: Path) -> Path:
    key = hashlib.sha256(requirements.read_bytes() + sys.version.encode()).hexdigest()[:12]
    return CACHE / "sandbox-env" / key


def ensure_sandbox_python(log: bool = True) -> Path:
    """Return the lean env's python, building the env first if needed (once per requirements hash)."""
    req = requirements_file()
    target = env_dir(req)
    python = target / "bin" / "python"
    done = target / ".complete"
    if done.exists():
        return python
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test workers or CLIs must not build into one dir at once
        if done.exists():
            return python
        if log:
            print(
                f"threadbox: building the sandbox environment in {target} (once, ~1 min)...", file=sys.stderr
            )
        shutil.rmtree(target, ignore_errors=True)
        uv = _uv()
        for cmd in (
            [uv, "venv", "--quiet", "--python", sys.executable, str(target)],
            [uv, "pip", "install", "--quiet", "--python", str(python), "-r", str(req)],
        ):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                raise SandboxEnvError(
                    f"building the sandbox env failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}"
                )
        done.touch()
    return python
