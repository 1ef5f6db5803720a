"""The `threadbox` client commands against a real running server."""

from __future__ import annotations

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
    assert main(["threads", "--server", "http://127.0.0.1:9"]) == 2
    assert "cannot reach the server" in capsys.readouterr().err
