"""A 1 GiB body to every write route of a controller in a subprocess: refused early, cheaply.

Each body is streamed from a generator over a raw socket, with ``Content-Length`` and
chunked without it. The answer must be 413, the controller's peak RSS (VmHWM) must grow
by under 32 MiB over all of them, and nothing past the route's limit may reach its disk.

The disk check cannot miss a spool: ``wchar`` in ``/proc/<pid>/io`` counts every byte the
process passed to write()/pwrite()/writev() in any thread, to any file, including a spool
file that never had a name (``O_TMPFILE``) or was unlinked at once. Its growth bounds what
the controller can have put on disk. On top, the controller's own ``TMPDIR`` must be empty
afterwards and none of its descriptors may still point into it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from controller.bodylimit import DEFAULT_LIMIT
from devkit.client import ADMIN_TOKEN, bearer
from devkit.ports import free_port
from devkit.procserver import Controller, running_controller
from devkit.slack_events import slack_settings
from tests.support.client import create_thread

pytestmark = pytest.mark.integration

GIB = 1 << 30
CHUNK = 1 << 20
MAX_FILE_BYTES = 8 << 20
MAX_CODE_BYTES = 100_000
RSS_GROWTH_LIMIT = 32 << 20
# What the controller may write besides a spool: answers, access log lines.
WRITE_SLACK = 1 << 20
# Limits of bodylimit.route_limits for these settings.
JSON_LIMIT = 6 * MAX_CODE_BYTES + 4096
UPLOAD_LIMIT = MAX_FILE_BYTES + 64 * 1024
BOUNDARY = "tbxboundary"
# What the kernel's socket buffers may take in once the server stops reading.
SOCKET_BUFFERS = 32 << 20
IO_TIMEOUT = 60.0


@dataclass(frozen=True)
class Answer:
    status: int
    detail: str
    sent: int


def _body(prefix: bytes) -> Iterator[bytes]:
    yield prefix
    filler = b"x" * CHUNK
    for _ in range(GIB // CHUNK):
        yield filler


def _read_answer(sock: socket.socket, into: bytearray, arrived: threading.Event) -> None:
    try:
        while data := sock.recv(65536):
            into += data
            arrived.set()
    except OSError:
        pass  # the connection was cut after the answer; what arrived before counts
    finally:
        arrived.set()


def post_huge(url: str, path: str, content_type: str, prefix: bytes, chunked: bool) -> Answer:
    """POST 1 GiB (plus ``prefix``) and stop sending as soon as an answer arrives."""
    parts = urlsplit(url)
    length = len(prefix) + GIB
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {content_type}\r\n"
        f"Authorization: Bearer {ADMIN_TOKEN}\r\n{framing}\r\n\r\n"
    )
    answer = bytearray()
    arrived = threading.Event()
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=IO_TIMEOUT) as sock:
        reader = threading.Thread(target=_read_answer, args=(sock, answer, arrived), daemon=True)
        reader.start()
        try:
            sock.sendall(head.encode())
            for chunk in _body(prefix):
                if arrived.is_set():
                    break
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server closed its side after answering
        reader.join(IO_TIMEOUT)
        assert not reader.is_alive(), "no end of the answer within the timeout"
    head_bytes, _, body = bytes(answer).partition(b"\r\n\r\n")
    assert head_bytes, f"no answer after sending {sent} bytes"
    status = int(head_bytes.split(b" ", 2)[1])
    return Answer(status, json.loads(body)["detail"], sent)


def _io(pid: int) -> dict[str, int]:
    lines = Path(f"/proc/{pid}/io").read_text().splitlines()
    return {key: int(value) for key, value in (line.split(": ") for line in lines)}


def _fds_into(pid: int, folder: Path) -> list[str]:
    targets = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            targets.append(os.readlink(fd))
        except FileNotFoundError:
            continue  # closed meanwhile
    return [t for t in targets if t.startswith(str(folder))]


def multipart_prefix() -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


@pytest.fixture
def controller(tmp_path: Path, sandbox_python: Path) -> Iterator[tuple[Controller, Path]]:
    spool = tmp_path / "spool"
    spool.mkdir()
    env = {
        "THREADBOX_DATA_DIR": str(tmp_path / "data"),
        "THREADBOX_SANDBOX_PYTHON": str(sandbox_python),
        "THREADBOX_CHAT_PORT": str(free_port()),
        "THREADBOX_ADMIN_TOKEN": ADMIN_TOKEN,
        "THREADBOX_MAX_FILE_BYTES": str(MAX_FILE_BYTES),
        "THREADBOX_MAX_CODE_BYTES": str(MAX_CODE_BYTES),
        "TMPDIR": str(spool),
    }
    with running_controller(env, tmp_path / "controller.log") as ctl:
        yield ctl, spool


def test_a_gib_body_to_every_write_route_is_refused_early_and_cheaply(
    controller: tuple[Controller, Path],
) -> None:
    ctl, spool = controller
    with httpx.Client(base_url=ctl.url, headers=bearer(ADMIN_TOKEN), timeout=IO_TIMEOUT) as client:
        tid = create_thread(client, "big-bodies")
        # Warm up every route with a small body, so lazily imported parsers count as before.
        small = client.post(
            f"/threads/{tid}/files", files={"file": ("s.txt", b"small")}, data={"name": "s.txt"}
        )
        assert small.status_code == 201, small.text
        assert client.post("/threads", json={"name": "other"}).status_code == 201
    routes = [
        ("/threads", "application/json", b'{"name": "'),
        (f"/threads/{tid}/execute", "application/json", b'{"code": "'),
        (f"/threads/{tid}/messages", "application/json", b'{"text": "'),
        (f"/threads/{tid}/files", f"multipart/form-data; boundary={BOUNDARY}", multipart_prefix()),
    ]
    peak_before, io_before = ctl.peak_rss_bytes(), _io(ctl.pid)
    for chunked in (False, True):
        for path, content_type, prefix in routes:
            limit = UPLOAD_LIMIT if path.endswith("/files") else JSON_LIMIT
            answer = post_huge(ctl.url, path, content_type, prefix, chunked)
            case = f"{path} {'chunked' if chunked else 'with Content-Length'}"
            assert answer.status == 413, case
            assert f"limit of {limit} bytes" in answer.detail, (case, answer.detail)
            # The answer came while the client was still sending: the server stopped reading
            # (a chunked body can only be judged once it is past the limit).
            assert (limit if chunked else 0) <= answer.sent < limit + SOCKET_BUFFERS, (case, answer.sent)
    growth = ctl.peak_rss_bytes() - peak_before
    written = _io(ctl.pid)["wchar"] - io_before["wchar"]
    print(f"peak RSS growth {growth / 2**20:.1f} MiB; bytes written {written / 2**20:.1f} MiB")
    assert growth < RSS_GROWTH_LIMIT
    # At most one body's worth (the chunked upload, cut at its limit) was ever written anywhere.
    assert written < UPLOAD_LIMIT + WRITE_SLACK
    assert list(spool.iterdir()) == [] and _fds_into(ctl.pid, spool) == []
    with httpx.Client(base_url=ctl.url, headers=bearer(ADMIN_TOKEN), timeout=IO_TIMEOUT) as client:
        files = client.get(f"/threads/{tid}/files").json()
    assert [f["name"] for f in files] == ["s.txt"]  # nothing of the big upload was stored


def test_bodies_up_to_their_limits_pass_and_the_chat_port_is_bounded_too(api: Any, fake: Any) -> None:
    client = api(max_code_bytes=1000, **slack_settings(fake))
    tid = create_thread(client, "near-limits")
    # Positive control: code at its byte limit, in the costliest JSON escaping (\u0000 per
    # byte), passes the body limit and reaches the route's own check of the code's size.
    code = "#" + "\x00" * 998 + "\n"
    body = json.dumps({"code": code}).encode()
    assert len(body) > 6 * 1000  # far over max_code_bytes as a body, and still accepted
    resp = client.post(f"/threads/{tid}/execute", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 200, resp.text
    assert [json.loads(line)["type"] for line in resp.text.splitlines()][-1] == "done"
    over = client.post(f"/threads/{tid}/execute", json={"code": "x" * 1001})
    assert over.status_code == 413 and "over the 1000 limit" in over.json()["detail"]
    # The chat port bounds its webhooks by the default limit.
    resp = client.chat.post("/slack/events", content=b"{" + b" " * DEFAULT_LIMIT + b"}")
    assert resp.status_code == 413 and f"limit of {DEFAULT_LIMIT} bytes" in resp.json()["detail"]
