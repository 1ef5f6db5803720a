"""The OpenAPI schema says what the API does: Schemathesis, on a budget, finds no server error
and no answer the schema does not describe (status, content type, headers, body)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devkit.client import ADMIN_TOKEN

pytestmark = pytest.mark.integration

# Every check but one, which tests what a request may be rather than what an answer is: a
# multipart part cannot tell a file from a string, so an upload "violating the schema" is a file.
SKIPPED_CHECKS = "negative_data_rejection"


@pytest.mark.timeout(300)
def test_schemathesis_finds_no_server_error_or_schema_mismatch(api: Any, tmp_path: Path) -> None:
    client = api(max_sandboxes=2, exec_timeout=5)
    argv = [
        *(str(Path(sys.executable).parent / "st"), "run", f"{client.base_url}/openapi.json"),
        *("-H", f"Authorization: Bearer {ADMIN_TOKEN}", "--checks", "all"),
        *("--exclude-checks", SKIPPED_CHECKS, "--max-examples", "8", "--seed", "16"),
        *("--workers", "1", "--request-timeout", "60", "--generation-database", "none", "--no-color"),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-2000:]
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert tested and int(tested[1]) >= 12, result.stdout[-2000:]  # every route was tried


def test_the_schema_documents_errors_streams_and_events(api: Any) -> None:
    client = api()
    assert client.options("/threads").headers["allow"] == "GET, POST"  # not one route's
    schema = client.get("/openapi.json").json()
    execute = schema["paths"]["/threads/{thread_id}/execute"]["post"]["responses"]
    assert set(execute["200"]["content"]) == {"application/x-ndjson", "text/event-stream"}
    assert {"400", "401", "404", "409", "413", "422", "503"} <= set(execute)
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
    assert all(execute[c]["content"] == error for c in execute if c != "200")
    events = schema["components"]["schemas"]["StreamEvent"]["discriminator"]["mapping"]
    assert {"status", "stdout", "display", "error", "files", "message", "done", "keepalive"} <= set(events)
    assert "HTTPValidationError" not in schema["components"]["schemas"]
