"""hack/lib.sh's uv setup on a fresh Debian-like machine, against a fake python3 whose pip
refuses user installs as PEP 668 makes it: nothing is installed on this machine."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PATH = "/usr/bin:/bin"

# Answers what lib.sh asks of python3; pip records each install and, like Debian's, refuses one
# without --break-system-packages, then puts the uv command where a user install does.
FAKE_PYTHON = """#!/bin/bash
case "$*" in
  "-m site --user-base") echo "$FAKE_USERBASE" ;;
  "-m uv --version") [[ -x "$FAKE_USERBASE/bin/uv" ]] ;;
  "-m pip --version") [[ -z "${FAKE_NO_PIP:-}" ]] ;;
  "-m pip install"*)
    echo "$*" >>"$FAKE_LOG"
    [[ "$*" == *--break-system-packages* ]] || { echo "error: externally-managed-environment" >&2; exit 1; }
    mkdir -p "$FAKE_USERBASE/bin" && printf '#!/bin/sh\\n' >"$FAKE_USERBASE/bin/uv" && chmod +x "$FAKE_USERBASE/bin/uv" ;;
  *) exit 2 ;;
esac
"""


@dataclass(frozen=True)
class Machine:
    bin: Path  # holds the fake python3
    userbase: Path
    log: Path

    def run(self, path: str, **env: str) -> subprocess.CompletedProcess[str]:
        script = 'set -euo pipefail; source "$1"; ensure_uv; uv_for_the_user; echo "${UV[*]}"'
        return subprocess.run(
            ["/bin/bash", "-c", script, "_", str(ROOT / "hack" / "lib.sh")],
            env={
                "PATH": path,
                "HOME": str(self.userbase.parent),
                "FAKE_USERBASE": str(self.userbase),
                "FAKE_LOG": str(self.log),
                **env,
            },
            capture_output=True,
            text=True,
            timeout=30,
        )

    def installs(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    if any(os.access(Path(d) / "uv", os.X_OK) for d in SYSTEM_PATH.split(":")):
        pytest.skip("this machine has uv in /usr/bin or /bin, so no PATH here lacks it")
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "python3").write_text(FAKE_PYTHON)
    (fake / "python3").chmod(0o755)
    return Machine(fake, tmp_path / "home" / ".local", tmp_path / "pip.log")


def test_uv_is_installed_past_pep_668_and_the_path_to_add_is_printed(machine: Machine) -> None:
    done = machine.run(f"{machine.bin}:{SYSTEM_PATH}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "python3 -m uv"
    assert machine.installs() == [
        "-m pip install --quiet --user uv",
        "-m pip install --quiet --user --break-system-packages uv",
    ]
    assert f'export PATH="{machine.userbase}/bin:$PATH"' in done.stderr


def test_nothing_is_installed_or_said_when_uv_is_on_path(machine: Machine) -> None:
    assert machine.run(f"{machine.bin}:{SYSTEM_PATH}").returncode == 0  # installs it
    done = machine.run(f"{machine.userbase}/bin:{machine.bin}:{SYSTEM_PATH}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "uv" and "PATH" not in done.stderr
    assert len(machine.installs()) == 2  # only the first run's


def test_a_python_without_pip_is_named_as_the_cause(machine: Machine) -> None:
    done = machine.run(f"{machine.bin}:{SYSTEM_PATH}", FAKE_NO_PIP="1")
    assert done.returncode != 0
    assert "apt-get install python3-pip" in done.stderr and machine.installs() == []
