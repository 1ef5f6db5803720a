"""What threadbox does when local kernels cannot be sandboxed, as an operator sees it.

bubblewrap is hidden from the controller by giving it a PATH without ``bwrap`` (it runs
its own Python by absolute path, so nothing else changes).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from devkit.procserver import running_controller

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

NO_BWRAP = "/nonexistent"


def _env(tmp_path: Path, sandbox_python: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADBOX_")}
    env.update(
        THREADBOX_DATA_DIR=str(tmp_path / "data"),
        THREADBOX_SANDBOX_PYTHON=str(sandbox_python),
        THREADBOX_ADMIN_TOKEN="admin-token-for-isolation-tests",
        **extra,
    )
    return env


def _serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a server that is expected to refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "exposure",
    [
        {"THREADBOX_HOST": "0.0.0.0"},
        {
            "THREADBOX_SLACK_MODE": "http",
            "THREADBOX_SLACK_BOT_TOKEN": "xoxb-test",
            "THREADBOX_SLACK_SIGNING_SECRET": "s" * 32,
        },
    ],
    ids=["non-loopback", "slack"],
)
def test_unsandboxed_kernels_are_refused_for_others(
    exposure: dict[str, str], tmp_path: Path, sandbox_python: Path
) -> None:
    env = _env(tmp_path, sandbox_python, PATH=NO_BWRAP, **exposure)
    proc = _serve(env)
    assert proc.returncode == 2, proc.stderr
    assert "bubblewrap (bwrap) is not installed" in proc.stderr
    assert "THREADBOX_LOCAL_ISOLATION=off" in proc.stderr  # the way out is named


def test_required_isolation_that_cannot_run_refuses(tmp_path: Path, sandbox_python: Path) -> None:
    proc = _serve(_env(tmp_path, sandbox_python, PATH=NO_BWRAP, THREADBOX_LOCAL_ISOLATION="bwrap"))
    assert proc.returncode == 2 and "THREADBOX_LOCAL_ISOLATION=bwrap, but bubblewrap" in proc.stderr


def test_loopback_without_bwrap_serves_and_says_so(tmp_path: Path, sandbox_python: Path) -> None:
    env = _env(tmp_path, sandbox_python, PATH=NO_BWRAP)
    with running_controller(env, tmp_path / "log") as ctl:
        ready = httpx.get(f"{ctl.url}/readyz", timeout=10).json()
    assert ready["isolation"].startswith("none: kernels run unsandboxed")
    assert "not isolated" in ready["warning"]
    assert "WARNING: code in one thread can read every other thread's files" in ctl.log.read_text()


def test_isolation_off_is_allowed_everywhere_with_a_warning(tmp_path: Path, sandbox_python: Path) -> None:
    env = _env(tmp_path, sandbox_python, THREADBOX_LOCAL_ISOLATION="off")
    with running_controller(env, tmp_path / "log") as ctl:
        ready = httpx.get(f"{ctl.url}/readyz", timeout=10).json()
    assert "THREADBOX_LOCAL_ISOLATION=off" in ready["isolation"] and "warning" in ready


def test_sandboxed_by_default(tmp_path: Path, sandbox_python: Path) -> None:
    with running_controller(_env(tmp_path, sandbox_python), tmp_path / "log") as ctl:
        ready = httpx.get(f"{ctl.url}/readyz", timeout=10).json()
    assert ready["isolation"].startswith("bubblewrap:") and "warning" not in ready
    assert "threadbox: sandboxes: bubblewrap:" in ctl.log.read_text()
