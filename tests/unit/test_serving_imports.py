"""What the servers load before the event loop runs, so that no first request imports it."""

from __future__ import annotations

import subprocess
import sys


def _httpcore_loaded_after(statement: str) -> bool:
    code = f"import sys; {statement}; print('httpcore' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip() == "True"


def test_the_servers_load_httpcore_before_any_client_is_made() -> None:
    assert _httpcore_loaded_after("import controller.serving")
    # The control: httpx alone leaves httpcore for its first client to import, on the loop.
    assert not _httpcore_loaded_after("import httpx")
