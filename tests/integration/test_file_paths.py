"""File paths through real HTTP and real kernels: links, collisions, file/folder swaps, names.

Code in the sandbox plants what it likes in its workspace; uploads and persists must never
follow it outside, never leave a ``.tmp-*`` behind, never show a host path, and a name
code can create must be listable and downloadable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.integration.test_reaper import minio_settings
from tests.support.client import create_thread, errors, run, stdout
from tests.support.poll import wait_until

pytestmark = pytest.mark.integration


def listing(client: Any, tid: str) -> dict[str, str]:
    return {f["name"]: f["sha256"] for f in client.get(f"/threads/{tid}/files").json()}


def upload(client: Any, tid: str, name: str, data: bytes = b"uploaded") -> Any:
    return client.post(f"/threads/{tid}/files", files={"file": ("f", data)}, data={"name": name})


def download(client: Any, tid: str, name: str) -> bytes:
    resp = client.get(f"/threads/{tid}/files/{quote(name)}")
    assert resp.status_code == 200, (name, resp.text)
    return bytes(resp.content)


def leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(".tmp-*")]


def store_settings(request: pytest.FixtureRequest, store: str, bucket: str) -> dict[str, Any]:
    """Nothing for the local store; the session's MinIO (started only then) for ``minio``."""
    return minio_settings(request.getfixturevalue("minio"), bucket) if store == "minio" else {}


def workspace(client: Any, tid: str) -> Path:
    return Path(client.runtime.manager._live[tid].info.workspace)


def test_uploads_never_follow_links_that_code_planted(api: Any, tmp_path: Path) -> None:
    client = api()
    tid = create_thread(client, "links")
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("host file")
    code = f"import os\nos.symlink({str(secret)!r}, 'link')\nos.symlink({str(outside)!r}, 'dirlink')"
    assert errors(run(client, tid, code)) == []
    ws = workspace(client, tid)
    # Positive control: the links lead, for the controller, to places this test can write.
    assert (ws / "link").resolve() == secret and (ws / "dirlink").resolve() == outside
    assert os.access(secret, os.W_OK) and os.access(outside, os.W_OK)
    before = listing(client, tid)
    for name in ("link", "dirlink/x", "dirlink/new/x"):
        resp = upload(client, tid, name)
        assert resp.status_code == 409, (name, resp.text)
        assert "symbolic link" in resp.json()["detail"] and str(tmp_path) not in resp.json()["detail"]
    assert secret.read_text() == "host file"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert listing(client, tid) == before
    assert leftovers(tmp_path / "data") == []


@pytest.mark.parametrize("store", ["local", "minio"])
def test_a_name_colliding_with_a_folder_or_a_file_is_409_and_writes_nothing(
    api: Any, request: pytest.FixtureRequest, tmp_path: Path, store: str
) -> None:
    client = api(max_file_bytes=1000, **store_settings(request, store, "collide"))
    tid = create_thread(client, "collide")
    assert upload(client, tid, "sub/a.txt").status_code == 201
    # Only in the live workspace: files persist refuses (over the size limit) are never stored.
    code = "import os\nos.makedirs('big')\nopen('big/huge.bin', 'wb').write(b'x' * 2000)\n"
    code += "open('solo.bin', 'wb').write(b'y' * 2000)"
    assert errors(run(client, tid, code)) == []
    before = listing(client, tid)
    assert sorted(before) == ["sub/a.txt"]
    for name, why in [
        ("sub", "'sub' is a folder"),
        ("sub/a.txt/b", "'sub/a.txt' is a file"),
        ("big", "'big' is a folder in the workspace"),
        ("solo.bin/b", "'solo.bin' is a file in the workspace"),
    ]:
        resp = upload(client, tid, name)
        assert resp.status_code == 409, (name, resp.text)
        assert why in resp.json()["detail"], resp.json()["detail"]
        assert listing(client, tid) == before
    assert leftovers(tmp_path / "data") == []
    assert stdout(run(client, tid, "print(open('sub/a.txt').read())")) == "uploaded\n"


@pytest.mark.parametrize("store", ["local", "minio"])
def test_code_swapping_a_folder_and_a_file_is_saved_every_time(
    api: Any, request: pytest.FixtureRequest, tmp_path: Path, store: str
) -> None:
    client = api(**store_settings(request, store, "swap"))
    tid = create_thread(client, "swap")
    steps = [
        ("os.makedirs('out')\nopen('out/a.txt', 'w').write('in a folder')", {"out/a.txt": b"in a folder"}),
        ("shutil.rmtree('out')\nopen('out', 'w').write('now a file')", {"out": b"now a file"}),
        (
            "os.remove('out')\nos.makedirs('out/deep')\nopen('out/deep/b.txt', 'w').write('b')",
            {"out/deep/b.txt": b"b"},
        ),
    ]
    texts = []
    for turn, (code, expected) in enumerate(steps):
        events = run(client, tid, f"import os, shutil\n{code}\nopen('zz.txt', 'w').write('turn {turn}')")
        texts.append(json.dumps(events))
        assert errors(events) == [], events
        [files] = [e for e in events if e["type"] == "files"]
        assert files["refused"] == {} and "zz.txt" in files["changed"]
        assert sorted(listing(client, tid)) == sorted([*expected, "zz.txt"])
        for name, content in expected.items():
            assert download(client, tid, name) == content
        assert download(client, tid, "zz.txt") == f"turn {turn}".encode()
    assert leftovers(tmp_path / "data") == []
    assert not any(str(tmp_path) in text for text in texts)


@pytest.mark.parametrize("store", ["local", "minio"])
def test_names_code_creates_are_listed_and_downloadable_and_never_churn(
    api: Any, request: pytest.FixtureRequest, store: str
) -> None:
    client = api(idle_timeout=2, reap_interval=0.3, **store_settings(request, store, "names"))
    tid = create_thread(client, "names")
    code = (
        "open('cafe\\u0301.txt', 'w').write('decomposed')\n"
        "open('a\\\\b.txt', 'w').write('backslash')\n"
        "open('a:b.txt', 'w').write('colon')"
    )
    assert errors(run(client, tid, code)) == []
    assert sorted(listing(client, tid)) == ["a:b.txt", "a\\b.txt", "caf\u00e9.txt"]
    assert download(client, tid, "a\\b.txt") == b"backslash"
    assert download(client, tid, "a:b.txt") == b"colon"
    assert download(client, tid, "caf\u00e9.txt") == b"decomposed"
    assert download(client, tid, "cafe\u0301.txt") == b"decomposed"  # either form finds it
    # An upload of the visible name replaces the code's file instead of adding a look-alike.
    assert upload(client, tid, "caf\u00e9.txt", b"uploaded").status_code == 201
    assert upload(client, tid, "a:b.txt", b"colon 2").status_code == 201
    assert sorted(listing(client, tid)) == ["a:b.txt", "a\\b.txt", "caf\u00e9.txt"]
    assert stdout(run(client, tid, "print(open('cafe\\u0301.txt').read())")) == "uploaded\n"
    stored = listing(client, tid)
    # Saved, stopped, restored: the next turn finds every file and uploads none again.
    assert wait_until(lambda: not client.runtime.manager.is_live(tid), timeout=20)
    events = run(client, tid, "import os; print(sorted(os.listdir('.')))")
    assert stdout(events) == "['a:b.txt', 'a\\\\b.txt', 'caf\u00e9.txt']\n"
    assert [e for e in events if e["type"] == "files"] == []
    assert listing(client, tid) == stored


def test_an_upload_spooled_to_disk_is_stored_and_reaches_the_live_sandbox(api: Any) -> None:
    client = api()
    tid = create_thread(client, "spooled")
    run(client, tid, "pass")
    data = os.urandom(3 << 20)  # past starlette's 1 MiB in-memory spool
    resp = upload(client, tid, "data/big.bin", data)
    assert resp.status_code == 201 and resp.json()["size"] == len(data)
    assert download(client, tid, "data/big.bin") == data
    code = "import hashlib; print(hashlib.sha256(open('data/big.bin', 'rb').read()).hexdigest())"
    assert stdout(run(client, tid, code)).strip() == resp.json()["sha256"]
