"""Authentication and thread ownership over real HTTP, with real kernels and the chat port.

Every check has a positive control beside it, so a check that passes because nothing
works (a server that answers 401 to everyone, a route that is simply gone) fails.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import BaseRoute, Route

from controller.api import create_app
from controller.auth import create_token, revoke_token
from controller.cli import main
from controller.identity import ThreadKey
from devkit.client import ADMIN_TOKEN, bearer
from devkit.fake_slack import TEAM_ID, FakeSlack
from devkit.ports import free_port
from devkit.procserver import running_controller
from devkit.slack_events import SlackSender, code, slack_settings
from tests.support.client import create_thread, run, stdout

pytestmark = pytest.mark.integration

# Routes anyone may call: probes and metrics carry no thread data, the console's page and
# assets must load before a token is entered, and the schema describes the API only.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/"),
    ("GET", "/console/{name}"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}
NO_THREAD = "No thread {!r}. Create it with POST /threads first."


def _unauthenticated(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=httpx.Timeout(10, read=120))


def _flat(routes: list[BaseRoute]) -> Iterator[Route]:
    for route in routes:
        if isinstance(route, Route):
            yield route
        else:  # FastAPI keeps an included router as one entry (private: original_router)
            included = route.original_router  # type: ignore[attr-defined]
            assert not included.prefix, "prefixed routers need their prefix added here"
            yield from _flat(included.routes)


def _routes(client: Any) -> list[tuple[str, str]]:
    """Every (method, path) of the API app, as the app itself lists them."""
    app = create_app(client.runtime)
    found = {(m, route.path) for route in _flat(app.routes) for m in route.methods or () if m != "HEAD"}
    assert len(found) > len(PUBLIC) + 8, found
    return sorted(found, key=lambda r: (r[0] == "DELETE", r))  # delete last: it removes the thread


class _Params(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "x"  # any other path parameter (a usage route's source, workspace...)


def _fill(path: str, thread_id: str) -> str:
    name = "console.js" if path.startswith("/console") else "x.txt"
    return path.replace("{name:path}", "{name}").format_map(_Params(thread_id=thread_id, name=name))


def test_every_api_route_needs_a_token_except_the_public_ones(api: Any) -> None:
    client = api()
    store = client.runtime.store
    thread_id = create_thread(client, "guarded")
    revoked, record = create_token(store, "alice")
    with _unauthenticated(str(client.base_url)) as anon:
        assert anon.get("/threads", headers=bearer(revoked)).status_code == 200  # control: it worked
        assert revoke_token(store, record.id) is not None
        routes = _routes(client)
        assert {r for r in routes if r in PUBLIC} == PUBLIC, "a public route is gone: update PUBLIC"
        for method, path in routes:
            url = _fill(path, thread_id)
            if (method, path) in PUBLIC:
                assert anon.request(method, url).status_code == 200, (method, path)
                continue
            for headers in ({}, bearer("tbx_wrong"), bearer(revoked), {"Authorization": "Basic YTpi"}):
                resp = anon.request(method, url, headers=headers)
                assert resp.status_code == 401, (method, path, headers, resp.text)
                assert resp.headers["www-authenticate"] == "Bearer"
                assert isinstance(resp.json()["detail"], str) and "tbx_" not in resp.text
            # Control: the admin token gets past authentication on the same request.
            assert anon.request(method, url, headers=bearer(ADMIN_TOKEN)).status_code != 401, (method, path)
    assert ("POST", "/slack/events") not in routes


def _partial_upload(url: str, thread_id: str, headers: dict[str, str]) -> bytes:
    """Headers of a 40 MB upload and its first bytes only; whatever the server answers in 5 s."""
    parsed = httpx.URL(url)
    head = [
        f"POST /threads/{thread_id}/files HTTP/1.1",
        f"Host: {parsed.host}:{parsed.port}",
        "Content-Type: multipart/form-data; boundary=b",
        f"Content-Length: {40 << 20}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    with socket.create_connection((parsed.host, parsed.port), timeout=5) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n--b\r\n").encode())
        try:
            return sock.recv(4096)
        except TimeoutError:
            return b""


def test_a_401_comes_before_the_body_is_read(api: Any) -> None:
    client = api()
    thread_id = create_thread(client, "uploads")
    answer = _partial_upload(str(client.base_url), thread_id, {})
    assert answer.startswith(b"HTTP/1.1 401"), answer
    # Control: an authenticated upload is read, so the server waits for the rest of it.
    assert _partial_upload(str(client.base_url), thread_id, bearer(ADMIN_TOKEN)) == b""


def test_users_see_and_touch_only_their_own_threads(api: Any, fake: FakeSlack) -> None:
    client = api(**slack_settings(fake))
    store = client.runtime.store
    alice_token, _ = create_token(store, "alice")
    bob_token, _ = create_token(store, "bob")
    # A user named like the Slack user still never reaches the Slack user's thread.
    slacker_token, _ = create_token(store, "U0ALICE")
    url = str(client.base_url)
    with (
        _unauthenticated(url) as alice,
        _unauthenticated(url) as bob,
        _unauthenticated(url) as slacker,
    ):
        alice.headers.update(bearer(alice_token))
        bob.headers.update(bearer(bob_token))
        slacker.headers.update(bearer(slacker_token))
        mine = create_thread(alice, "demo")
        theirs = create_thread(bob, "demo")
        assert mine != theirs, "the owner is part of a thread's identity"
        assert stdout(run(alice, mine, "print(6 * 7)")) == "42\n"
        assert alice.post(f"/threads/{mine}/files", files={"file": ("a.txt", b"alice's")}).status_code == 201

        _assert_hidden(bob, mine)
        assert [t["id"] for t in bob.get("/threads").json()] == [theirs]
        assert [t["id"] for t in alice.get("/threads").json()] == [mine]
        assert alice.get(f"/threads/{mine}/files/a.txt").content == b"alice's"  # control: still there

        refused = alice.post("/threads", json={"name": "x", "user": "bob"})
        assert refused.status_code == 403 and "admin" in refused.json()["detail"]
        made = client.post("/threads", json={"name": "for bob", "user": "bob"})
        assert made.status_code == 201 and made.json()["user"] == "bob"
        assert bob.get(f"/threads/{made.json()['id']}").status_code == 200

        chat_thread = _slack_thread(client, fake)
        _assert_hidden(slacker, chat_thread)
        assert slacker.get("/threads").json() == []
        listed = {t["id"] for t in client.get("/threads").json()}
        assert {mine, theirs, made.json()["id"], chat_thread} == listed, "an admin sees every thread"
        assert client.get(f"/threads/{chat_thread}").json()["source"] == "slack"
        assert client.delete(f"/threads/{theirs}").status_code == 204
        assert bob.get(f"/threads/{theirs}").status_code == 404


def _assert_hidden(who: httpx.Client, thread_id: str) -> None:
    """Every route on someone else's thread answers exactly as for a missing thread."""
    missing = "api-aaaaaaaaaaaaaaaa"
    for method, path, kw in (
        ("GET", "", {}),
        ("POST", "/execute", {"json": {"code": "print('stolen')"}}),
        ("POST", "/messages", {"json": {"text": "hello"}}),
        ("GET", "/files", {}),
        ("POST", "/files", {"files": {"file": ("x.txt", b"planted")}}),
        ("GET", "/files/a.txt", {}),
        ("DELETE", "", {}),
    ):
        resp = who.request(method, f"/threads/{thread_id}{path}", **kw)
        assert resp.status_code == 404, (method, path, resp.text)
        assert resp.json() == {"detail": NO_THREAD.format(thread_id)}
        absent = who.request(method, f"/threads/{missing}{path}", **kw)
        assert absent.status_code == 404 and absent.json() == {"detail": NO_THREAD.format(missing)}


def _slack_thread(client: Any, fake: FakeSlack) -> str:
    slack = SlackSender(client)
    sent = slack.mention("C9", code("print('from slack')"))
    assert sent.response.status_code == 200
    fake.wait_for(lambda: "from slack" in fake.text_in_thread("C9", sent.ts) or None, 90, "the Slack reply")
    return ThreadKey("slack", TEAM_ID, "C9", sent.ts).id


def test_chat_port_serves_only_chat_paths(api: Any, fake: FakeSlack) -> None:
    client = api(**slack_settings(fake))
    chat: httpx.Client = client.chat
    assert client.post("/slack/events", content=b"{}").status_code == 404, "no webhooks on the API port"
    assert chat.post("/slack/events", content=b"{}").status_code == 401  # control: Slack's own check
    assert chat.get("/healthz").status_code == 200
    for path in ("/threads", "/", "/console/console.js", "/docs", "/openapi.json", "/metrics", "/readyz"):
        assert chat.get(path, headers=bearer(ADMIN_TOKEN)).status_code == 404, path
        assert client.get(path).status_code == 200, path  # control: the API port has them


@pytest.mark.parametrize(("cidrs", "works"), [(["127.0.0.1/32"], True), (["10.0.0.0/8"], False)])
def test_proxy_header_counts_only_from_a_trusted_peer(api: Any, cidrs: list[str], works: bool) -> None:
    client = api(auth_proxy_cidrs=cidrs, auth_proxy_admins=["root"])
    with _unauthenticated(str(client.base_url)) as proxied:
        carol = {"X-Forwarded-User": "carol"}
        made = proxied.post("/threads", json={"name": "via proxy"}, headers=carol)
        if not works:
            assert made.status_code == 401 and made.headers["www-authenticate"] == "Bearer"
            assert proxied.get("/threads", headers={"X-Forwarded-User": "root"}).status_code == 401
            # A claimed forwarding address is no peer address.
            spoofed = carol | {"X-Forwarded-For": "10.1.2.3", "Forwarded": "for=10.1.2.3"}
            assert proxied.get("/threads", headers=spoofed).status_code == 401
            return
        # A proxy on this host says who its client was; the peer (the proxy) is what counts.
        forwarded = carol | {"X-Forwarded-For": "203.0.113.9"}
        assert proxied.get("/threads", headers=forwarded).status_code == 200
        assert made.status_code == 201 and made.json()["user"] == "carol"
        other = create_thread(client, "admin's")
        assert [t["id"] for t in proxied.get("/threads", headers=carol).json()] == [made.json()["id"]]
        assert proxied.get(f"/threads/{other}", headers=carol).status_code == 404
        root = proxied.get("/threads", headers={"X-Forwarded-User": "root"}).json()
        assert {made.json()["id"], other} <= {t["id"] for t in root}, "proxy admins see everything"
        # A bearer token decides alone: a bad one is not rescued by the proxy header.
        assert proxied.get("/threads", headers=carol | bearer("tbx_wrong")).status_code == 401
        assert proxied.get("/threads").status_code == 401


def test_custom_proxy_header_replaces_the_default(api: Any) -> None:
    client = api(auth_proxy_cidrs=["127.0.0.1/32"], auth_proxy_header="X-Auth-User")
    with _unauthenticated(str(client.base_url)) as proxied:
        assert proxied.get("/threads", headers={"X-Forwarded-User": "carol"}).status_code == 401
        assert proxied.get("/threads", headers={"X-Auth-User": "carol"}).status_code == 200


def test_storage_outage_never_widens_access(api: Any, tmp_path: Path) -> None:
    """With MinIO down, a live thread stays usable by its owner and hidden from everyone else,
    and a live thread that was deleted is not brought back from the controller's memory."""
    from devkit.minio import running_minio

    with running_minio(tmp_path / "minio") as server:
        client = api(
            store="minio",
            minio_endpoint=server.endpoint,
            minio_access_key=server.access_key,
            minio_secret_key=server.secret_key,
            auth_proxy_cidrs=["127.0.0.1/32"],
        )
        user_token, _ = create_token(client.runtime.store, "erin")
        url = str(client.base_url)
        with (
            httpx.Client(base_url=url, headers={"X-Forwarded-User": "carol"}, timeout=120) as carol,
            httpx.Client(base_url=url, headers={"X-Forwarded-User": "dave"}, timeout=120) as dave,
        ):
            tid = create_thread(carol, "live one")
            assert stdout(run(carol, tid, "print('up')")) == "up\n"
            assert dave.get(f"/threads/{tid}").status_code == 404
            # Deleted by another replica (straight from the store) while its sandbox lives on here.
            deleted = create_thread(carol, "deleted elsewhere")
            assert stdout(run(carol, deleted, "print('up')")) == "up\n"
            client.runtime.store.delete_thread(deleted)
            assert carol.get(f"/threads/{deleted}").status_code == 404
            assert client.runtime.manager.is_live(deleted)
    # MinIO is gone: the owner still reaches the live thread (the controller's recent records) ...
    with (
        httpx.Client(base_url=url, headers={"X-Forwarded-User": "carol"}, timeout=120) as carol,
        httpx.Client(base_url=url, headers={"X-Forwarded-User": "dave"}, timeout=120) as dave,
    ):
        assert carol.get(f"/threads/{tid}").status_code == 200
        # ... but not the deleted one: storage cannot say, so it says that.
        unknown = carol.get(f"/threads/{deleted}")
        assert unknown.status_code == 503 and "Storage is unavailable" in unknown.json()["detail"]
        # ... and nobody else does, through that same path.
        hidden = dave.get(f"/threads/{tid}")
        assert hidden.status_code == 404 and hidden.json() == {"detail": NO_THREAD.format(tid)}
        # A token that cannot be checked is a clear 503, never a pass.
        unchecked = dave.get("/threads", headers=bearer(user_token))
        assert unchecked.status_code == 503 and "cannot be checked" in unchecked.json()["detail"]


def _serve_env(tmp_path: Path, sandbox_python: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADBOX_")}
    return env | {
        "THREADBOX_DATA_DIR": str(tmp_path / "data"),
        "THREADBOX_SANDBOX_PYTHON": str(sandbox_python),
        "THREADBOX_CHAT_PORT": str(free_port()),
        **extra,
    }


def test_non_loopback_bind_without_auth_refuses_to_start(tmp_path: Path, sandbox_python: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "controller.cli",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        str(free_port()),
    ]
    refused = subprocess.run(
        command, env=_serve_env(tmp_path, sandbox_python), capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2, refused.stderr
    assert "refusing to serve on 0.0.0.0" in refused.stderr and "THREADBOX_ADMIN_TOKEN" in refused.stderr
    # Control: on loopback the same configuration starts, and still asks for a token.
    env = _serve_env(tmp_path, sandbox_python)
    with running_controller(env, tmp_path / "loopback.log") as server:
        assert httpx.get(f"{server.url}/threads", timeout=10).status_code == 401


def test_a_busy_chat_port_stops_the_controller_cleanly(tmp_path: Path, sandbox_python: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = _serve_env(tmp_path, sandbox_python, THREADBOX_CHAT_PORT=str(taken.getsockname()[1]))
        command = [sys.executable, "-m", "controller.cli", "serve", "--port", str(free_port())]
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "could not serve on 127.0.0.1" in proc.stderr and "Traceback" not in proc.stderr
    assert "Application shutdown complete" in proc.stderr, "the runtime is closed"


def test_dev_prints_a_token_the_cli_finds(
    tmp_path: Path, sandbox_python: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _serve_env(tmp_path, sandbox_python)
    with running_controller(env, tmp_path / "dev.log", command="dev") as server:
        dev_token = tmp_path / "data" / "dev-token"
        token = dev_token.read_text().strip()
        assert token.startswith("tbx_") and stat.S_IMODE(dev_token.stat().st_mode) == 0o600
        log = (tmp_path / "dev.log").read_text()
        assert f"{server.url}/#token={token}" in log
        monkeypatch.delenv("THREADBOX_TOKEN", raising=False)
        monkeypatch.setenv("THREADBOX_DATA_DIR", str(tmp_path / "data"))
        assert main(["run", "--server", server.url, "-t", "demo", "print(6 * 7)"]) == 0
        assert "42" in capsys.readouterr().out
        # Control: without the dev token file the same command is refused.
        monkeypatch.setenv("THREADBOX_DATA_DIR", str(tmp_path / "elsewhere"))
        with pytest.raises(SystemExit):
            main(["threads", "--server", server.url])
        assert "401" in capsys.readouterr().err


def test_token_commands_keep_only_a_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("THREADBOX_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("THREADBOX_DATA_DIR", str(tmp_path / "data"))
    assert main(["token", "create", "--user", "alice", "--label", "laptop"]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("tbx_") and "shown only this once" in out.err
    assert main(["token", "create", "--user", "root", "--admin"]) == 0
    capsys.readouterr()
    assert main(["token", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == 2 and token not in "".join(listing)
    alice = next(line for line in listing if " alice " in line)
    assert alice.endswith("laptop") and " user " in alice
    assert " admin " in next(line for line in listing if " root " in line)

    store_files = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert store_files, "the tokens must be in the store"
    assert not any(token.encode() in p.read_bytes() for p in store_files)
    records = [json.loads(p.read_text()) for p in store_files if p.parent.name == "tokens"]
    assert {r["user"] for r in records} == {"alice", "root"}

    token_id = alice.split()[0]
    assert main(["token", "revoke", token_id]) == 0
    assert main(["token", "revoke", token_id]) == 1
    assert "no token with id" in capsys.readouterr().err
    assert main(["token", "list"]) == 0
    assert " alice " not in capsys.readouterr().out
