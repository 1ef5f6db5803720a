"""Bad input gets a clear 4xx and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.client import create_thread

pytestmark = pytest.mark.integration


@pytest.fixture
def client(api: Any) -> Any:
    return api(max_file_bytes=1000, max_code_bytes=100, thread_max_files=2)


def nothing_written(client: Any, tid: str) -> None:
    assert client.get(f"/threads/{tid}/files").json() == []
    assert not client.runtime.manager.is_live(tid)


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd", "a/../../b", "bad\x01name", ".threadbox-x"])
def test_traversal_and_unsafe_filenames(client: Any, name: str) -> None:
    tid = create_thread(client, "names")
    resp = client.post(f"/threads/{tid}/files", files={"file": ("x", b"data")}, data={"name": name})
    assert resp.status_code == 400
    assert resp.json()["detail"].startswith("Bad filename:")
    nothing_written(client, tid)


def test_oversize_upload(client: Any) -> None:
    tid = create_thread(client, "big")
    resp = client.post(f"/threads/{tid}/files", files={"file": ("big.bin", b"x" * 1001)})
    assert resp.status_code == 413 and "over the" in resp.json()["detail"]
    nothing_written(client, tid)


def test_thread_file_quota(client: Any) -> None:
    tid = create_thread(client, "quota")
    for name in ("a", "b"):
        assert client.post(f"/threads/{tid}/files", files={"file": (name, b"1")}).status_code == 201
    resp = client.post(f"/threads/{tid}/files", files={"file": ("c", b"1")})
    assert resp.status_code == 413 and "limit of 2 files" in resp.json()["detail"]
    assert [f["name"] for f in client.get(f"/threads/{tid}/files").json()] == ["a", "b"]


def test_unknown_thread(client: Any) -> None:
    for method, path in (
        ("get", "/threads/api-aaaaaaaaaaaaaaaa"),
        ("get", "/threads/nope/files"),
        ("post", "/threads/api-aaaaaaaaaaaaaaaa/execute"),
        ("delete", "/threads/../../etc"),
    ):
        kwargs = {"json": {"code": "1"}} if method == "post" else {}
        resp = getattr(client, method)(path, **kwargs)
        assert resp.status_code == 404, (method, path)
    assert client.get("/threads").json() == []


def test_malformed_json(client: Any) -> None:
    tid = create_thread(client, "json")
    resp = client.post(
        f"/threads/{tid}/execute",
        content=b'{"code": "print(1)"',
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 400 and resp.json()["detail"] == "The request body is not valid JSON."
    resp = client.post(f"/threads/{tid}/execute", json={"cod": "print(1)"})
    assert resp.status_code == 422 and "code" in resp.json()["detail"]
    nothing_written(client, tid)


def test_code_over_the_size_limit(client: Any) -> None:
    tid = create_thread(client, "code")
    resp = client.post(f"/threads/{tid}/execute", json={"code": "x = 1\n" * 50})
    assert resp.status_code == 413 and "over the 100 limit" in resp.json()["detail"]
    nothing_written(client, tid)


def test_upload_reaches_a_live_sandbox_and_download_roundtrips(client: Any) -> None:
    from tests.support.client import run, stdout

    tid = create_thread(client, "live")
    run(client, tid, "pass")
    resp = client.post(f"/threads/{tid}/files", files={"file": ("données.csv", b"a\n1\n")})
    assert resp.status_code == 201 and resp.json()["name"] == "données.csv"
    assert stdout(run(client, tid, "print(open('données.csv').read())")) == "a\n1\n\n"
    assert client.get(f"/threads/{tid}/files/données.csv").content == b"a\n1\n"
    assert client.delete(f"/threads/{tid}").status_code == 204
    assert client.get(f"/threads/{tid}").status_code == 404
    assert not client.runtime.manager.is_live(tid)
