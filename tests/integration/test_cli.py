"""The `threadbox` client commands against a real running server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from devkit.client import ADMIN_TOKEN

pytestmark = pytest.mark.integration


def test_run_upload_and_threads(
    api: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = str(api().base_url)
    monkeypatch.setenv("THREADBOX_TOKEN", ADMIN_TOKEN)
    data = tmp_path / "nums.csv"
    data.write_text("n\n1\n2\n")
    assert main(["upload", "--server", server, "-t", "cli", str(data)]) == 0
    script = tmp_path / "job.py"
    script.write_text("import pandas as pd\nprint(pd.read_csv('nums.csv').n.sum())\n6 * 7\n")
    assert main(["run", "--server", server, "-t", "cli", "-f", str(script)]) == 0
    out = capsys.readouterr()
    assert "uploaded nums.csv (6 bytes)" in out.out
    assert "3\n42\n" in out.out and "[ready] Sandbox ready." in out.err
    assert main(["run", "--server", server, "-t", "cli", "1 / 0"]) == 1
    assert "ZeroDivisionError" in capsys.readouterr().err
    assert main(["threads", "--server", server]) == 0
    assert "live  cli" in capsys.readouterr().out


def test_unreachable_server_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["threads", "--server", "http://127.0.0.1:9"]) == 3
    assert "cannot reach the server" in capsys.readouterr().err


def test_version_and_documented_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out == f"threadbox {version('threadbox')}\n"
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    assert "exit codes:" in shown and "THREADBOX_SERVER" in shown


@pytest.mark.timeout(180)
def test_the_readme_command_runs_by_name_from_the_environment(api: Any) -> None:
    """`threadbox run -t demo 'print(1)'`, as the README has it, as its own process: the server
    from THREADBOX_SERVER, the thread by name; then by id, and JSON out; a refusal exits 4."""
    client = api()
    env = {**os.environ, "THREADBOX_SERVER": str(client.base_url), "THREADBOX_TOKEN": ADMIN_TOKEN}
    threadbox = [str(Path(sys.executable).parent / "threadbox")]

    def cli(*argv: str, token: str = ADMIN_TOKEN) -> subprocess.CompletedProcess[str]:
        run_env = env | {"THREADBOX_TOKEN": token}
        return subprocess.run([*threadbox, *argv], env=run_env, capture_output=True, text=True, timeout=120)

    first = cli("run", "-t", "demo", "print(1)")
    assert (first.returncode, first.stdout) == (0, "1\n"), first.stderr
    listed = json.loads(cli("threads", "--json").stdout)
    demo = next(t for t in listed if t["name"] == "demo")
    by_id = cli("run", "--json", "-t", demo["id"], "1 / 0")
    events = [json.loads(line) for line in by_id.stdout.splitlines()]
    assert by_id.returncode == 1 and events[-1]["type"] == "done" and events[-1]["status"] == "error"
    refused = cli("threads", token="tbx_wrong")
    assert refused.returncode == 4 and "server said 401" in refused.stderr
