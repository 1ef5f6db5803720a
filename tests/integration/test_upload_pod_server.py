"""An upload stored, then refused by the live sandbox's in-pod server: the answer says it is stored.

It used to be 503 "Storage is unavailable, nothing was changed" (the in-pod server's error
subclassed StoreUnavailable) although the store held the file. The thread's sandbox here is a
real local kernel; its ``write_file`` goes where a pod's does, through the real PodServer
client to a real HTTP server on the in-pod server's port that fails, or to nothing at all.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from controller.backends.base import SandboxInfo
from controller.k8s.connection import SERVER_PORT
from controller.k8s.podserver import PodRef, PodServer
from devkit.ports import free_address
from tests.support.client import create_thread, errors, run

pytestmark = pytest.mark.integration

LOOPBACKS = [f"127.0.0.{n}" for n in range(77, 97)]  # the in-pod server's port is fixed: vary the address


class DiskFull(BaseHTTPRequestHandler):
    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"error": "No space left on device"}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def failing_server() -> Iterator[str]:
    """The address of a server on the in-pod server's port that answers every upload with 500."""
    for ip in LOOPBACKS:
        try:
            server = ThreadingHTTPServer((ip, SERVER_PORT), DiskFull)
        except OSError:
            continue
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield ip
        server.shutdown()
        server.server_close()
        return
    pytest.fail(f"port {SERVER_PORT} is taken on every one of {LOOPBACKS}")


@pytest.fixture
def silent_address() -> str:
    """An address where nothing listens on the in-pod server's port (connections are refused)."""
    taken = f"port {SERVER_PORT} is taken on every one of {LOOPBACKS}"
    return free_address(SERVER_PORT, LOOPBACKS) or pytest.fail(taken)


def upload_to_failing_pod(api: Any, monkeypatch: pytest.MonkeyPatch, pod_ip: str) -> tuple[Any, str, Any]:
    client = api()
    tid = create_thread(client, "podfail")
    assert errors(run(client, tid, "1")) == []  # the thread's sandbox is live

    async def into_the_pod(info: SandboxInfo, name: str, data: bytes) -> None:
        server = PodServer()
        try:
            await server.write_file(PodRef(info.name, "uid", pod_ip, "key"), name, data)
        finally:
            await server.close()

    monkeypatch.setattr(client.runtime.manager.backend, "write_file", into_the_pod)
    resp = client.post(f"/threads/{tid}/files", files={"file": ("data.csv", b"a,b\n1,2\n")})
    return client, tid, resp


def assert_stored_and_said(client: Any, tid: str, resp: Any, reason: str) -> None:
    detail = resp.json()["detail"]
    assert resp.status_code == 502, detail
    assert "nothing was changed" not in detail
    assert detail.startswith("data.csv is stored in the thread's files") and reason in detail, detail
    assert [f["name"] for f in client.get(f"/threads/{tid}/files").json()] == ["data.csv"]
    assert client.get(f"/threads/{tid}/files/data.csv").content == b"a,b\n1,2\n"


def test_an_upload_the_pod_server_fails_is_stored_and_the_answer_says_so(
    api: Any, monkeypatch: pytest.MonkeyPatch, failing_server: str
) -> None:
    client, tid, resp = upload_to_failing_pod(api, monkeypatch, failing_server)
    assert_stored_and_said(client, tid, resp, "(No space left on device)")


def test_an_upload_the_pod_server_never_answers_is_stored_and_the_answer_says_so(
    api: Any, monkeypatch: pytest.MonkeyPatch, silent_address: str
) -> None:
    client, tid, resp = upload_to_failing_pod(api, monkeypatch, silent_address)
    assert_stored_and_said(client, tid, resp, "(its file server did not answer)")
