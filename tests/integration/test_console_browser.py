"""The web console in a real headless Chromium, against the real app and real kernels.

tests/browser/console_flow.mjs drives the page (playwright-core) and reports what it
showed; the assertions live here. Needs hack/install-browser.sh to have run.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devkit.client import ADMIN_TOKEN
from tests.support.client import create_thread

pytestmark = pytest.mark.integration

BROWSER_DIR = Path(__file__).resolve().parents[1] / "browser"
CHROMIUM = Path(os.environ.get("THREADBOX_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_FAILED = 3  # console_flow.mjs's exit code when Chromium will not start

SECRET = "secret plans"
CSV = "month,region,sales\njan,north,120\nfeb,south,340\nmar,north,260\napr,south,514\n"
SUMMARY = "region,sales\nnorth,380\nsouth,854\n"
CODE = """\
import pandas as pd
import matplotlib.pyplot as plt

df = pd.read_csv("data.csv")
print("total sales:", df["sales"].sum())
print("<b>not bold</b>")
df.plot(x="month", y="sales", kind="bar", legend=False, title="Sales by month")
plt.show()
df.groupby("region")["sales"].sum().to_csv("summary.csv")
df
"""


def _browser_missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found; run hack/install-browser.sh"
    if shutil.which("node") is None:
        return "node not found; install Node.js, then run hack/install-browser.sh"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        return "playwright-core not installed in tests/browser; run hack/install-browser.sh"
    return None


def _drive(scenario: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        ["node", str(BROWSER_DIR / "console_flow.mjs"), json.dumps(scenario)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=BROWSER_DIR,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == LAUNCH_FAILED:
        pytest.skip(f"SKIPPED: chromium: it would not start: {json.loads(lines[-1])['launch_error']}")
    assert proc.returncode == 0 and lines, f"console_flow.mjs failed:\n{proc.stdout}\n{proc.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert "failure" not in result, (
        f"{result['failure']}\nscreenshot: {scenario['screenshots']}/console-failure.png"
    )
    return result


def test_console_end_to_end(api: Any, tmp_path: Path) -> None:
    """One browser session, checked from several sides: kernels are too slow to start per check."""
    missing = _browser_missing()
    if missing:
        pytest.skip(f"SKIPPED: chromium: {missing}")
    client = api()
    create_thread(client, SECRET)  # data the signed-out page must not show
    (tmp_path / "data.csv").write_text(CSV)
    bad = tmp_path / ".threadbox-secrets.txt"
    bad.write_text("reserved name")
    result = _drive(
        {
            "url": str(client.base_url).rstrip("/"),
            "token": ADMIN_TOKEN,
            "chromium": str(CHROMIUM),
            "thread": "sales analysis",
            "upload": str(tmp_path / "data.csv"),
            "uploadName": "data.csv",
            "badUpload": str(bad),
            "code": CODE,
            "download": "summary.csv",
            "message": "hello there",
            "failing": "1 / 0",
            "screenshots": str(tmp_path),
        }
    )
    print(f"console screenshots: {tmp_path}/console*.png")
    _check_token_gate(result)
    _check_code_turn(result)
    _check_rich_output(result)
    _check_files(client, result)
    _check_message_and_error(result)


def _check_token_gate(result: dict[str, Any]) -> None:
    gate = result["signed_out"]
    assert gate["layout_hidden"] and gate["threads"] == 0 and SECRET not in gate["text"]
    assert "Sign in" in gate["text"], "the token form is shown"
    assert "not valid" in gate["wrong_token"] and gate["still_hidden"]
    assert "token" not in result["address"], "the token must leave the address bar"
    assert SECRET in result["threads"], "signed in through the link, the threads are listed"


def _check_code_turn(result: dict[str, Any]) -> None:
    # The refused upload is the one error the browser should log.
    refused = f"status of 400 (Bad Request) @ {result['origin']}/threads/{result['thread_id']}/files"
    assert [p for p in result["problems"] if not p.endswith(refused)] == [], "the page logged errors"
    assert result["health"].startswith("ready")
    assert result["listed"] == "sales analysis"

    code = result["code"]
    assert "is-ok" in code["foot"], code
    assert "total sales: 1234" in code["stdout"]
    assert "<b>not bold</b>" in code["stdout"] and code["injected"] == 0, "kernel text must stay text"
    assert any(s.startswith(("starting", "ready")) for s in code["status"]), code["status"]


def _check_rich_output(result: dict[str, Any]) -> None:
    pngs = [i for i in result["code"]["images"] if i["src"].startswith("data:image/png;base64,")]
    assert pngs, result["code"]["images"]
    assert base64.b64decode(pngs[0]["src"].split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert pngs[0]["width"] > 100, "the browser failed to decode the plot"
    [frame] = result["code"]["frames"]
    assert frame["sandbox"] == "allow-same-origin", "kernel HTML must never get allow-scripts"
    assert "north" in frame["text"] and "514" in frame["text"]
    assert frame["height"] > 60, "the table frame should be sized to its content"


def _check_files(client: Any, result: dict[str, Any]) -> None:
    assert result["download"] == {"name": "summary.csv", "text": SUMMARY}
    assert "summary.csv" in result["code"]["changed"]
    assert {"data.csv", "summary.csv"} <= set(result["files_panel"])
    stored = client.get(f"/threads/{result['thread_id']}/files").json()
    assert {"data.csv", "summary.csv"} <= {f["name"] for f in stored}
    assert "reserved" in result["upload_error"] and result["upload_error"].startswith("Upload failed:")


def _check_message_and_error(result: dict[str, Any]) -> None:
    assert any("fenced block" in m for m in result["message"]["messages"]), result["message"]
    failing = result["failing"]
    assert "is-error" in failing["foot"]
    [error] = failing["errors"]
    assert error.startswith("ZeroDivisionError: division by zero"), error
    assert "\x1b[" not in error, "ANSI colour codes must be stripped"
