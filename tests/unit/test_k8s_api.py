"""The one API-server error policy (controller/k8s/api.py), through the real client over real HTTP.

A small HTTP server answers as the API server does for each case (a Status body with the
code); the kubernetes_asyncio client, its aiohttp session and the JSON decoding are the real ones.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from controller.k8s import pods
from controller.k8s.api import Kube, load_api_client, starting
from controller.k8s.errors import StartFailed

pytestmark = pytest.mark.timeout(60)

NS = "sandboxes"
PODS = f"/api/v1/namespaces/{NS}/pods"
POLICIES = f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"
SECRETS = f"/api/v1/namespaces/{NS}/secrets"

# (method, path) -> (status, body); anything else is 404.
ANSWERS: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {
    ("GET", f"{PODS}/here"): (
        200,
        {"metadata": {"name": "here", "uid": "u-1"}, "status": {"podIP": "10.1.2.3"}},
    ),
    ("POST", POLICIES): (
        409,
        {"kind": "Status", "code": 409, "message": 'networkpolicies "p" already exists'},
    ),
    ("DELETE", f"{PODS}/replaced"): (
        409,
        {"kind": "Status", "code": 409, "message": "Precondition failed: UID"},
    ),
    ("DELETE", f"{PODS}/locked"): (403, {"kind": "Status", "code": 403, "message": "pods is forbidden"}),
    ("POST", SECRETS): (403, {"kind": "Status", "code": 403, "message": 'secrets is forbidden: User "x"'}),
    ("GET", PODS): (403, {"kind": "Status", "code": 403, "message": "pods is forbidden"}),
}


def send_json(handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class FakeApiServer(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, Any]]] = []  # (method, path, body), reset by the fixture

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        path = self.path.split("?", 1)[0]
        self.seen.append((self.command, path, body))
        status, payload = ANSWERS.get(
            (self.command, path), (404, {"kind": "Status", "code": 404, "message": "not found"})
        )
        send_json(self, status, payload)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *_args: Any) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """An HTTP server on a free local port, answered by ``handler``; its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.asynccontextmanager
async def kube_at(host: str) -> AsyncIterator[Kube]:
    """An open Kube on a real ApiClient for ``host``, closed after."""

    async def connect() -> client.ApiClient:
        cfg = client.Configuration()
        cfg.host = host
        return client.ApiClient(cfg)

    kube = Kube(NS, connect)
    await kube.open()
    try:
        yield kube
    finally:
        await kube.close()


def unopened_kube() -> Kube:
    """For tests that play the API server's part: any API call fails (Kube.open() never ran)."""

    async def connect() -> client.ApiClient:
        raise AssertionError("this test does not talk to an API server")

    return Kube(NS, connect)


@pytest.fixture
async def kube() -> AsyncIterator[Kube]:
    FakeApiServer.seen = []
    with serving(FakeApiServer) as host:
        async with kube_at(host) as kube:
            yield kube


async def test_a_read_answered_404_is_none_and_a_found_object_is_its_json(kube: Kube) -> None:
    assert await pods.read(kube, "missing") is None
    pod = await pods.read(kube, "here")
    assert pod is not None and pod["status"]["podIP"] == "10.1.2.3"  # camelCase: the API's own JSON


async def test_a_create_answered_409_means_it_exists(kube: Kube) -> None:
    body = {"metadata": {"name": "p"}}
    assert await kube.create(kube.net.create_namespaced_network_policy, body) is None
    assert FakeApiServer.seen == [("POST", POLICIES, body)]


async def test_a_delete_answered_404_or_409_is_done_and_carries_its_precondition(kube: Kube) -> None:
    await pods.delete(kube, "gone", "u-gone", wait=False)
    await pods.delete(kube, "replaced", "u-old", wait=False)
    assert [body["preconditions"] for _, _, body in FakeApiServer.seen] == [
        {"uid": "u-gone"},
        {"uid": "u-old"},
    ]
    with pytest.raises(ApiException) as refused:
        await pods.delete(kube, "locked", "u-1", wait=False)
    assert refused.value.status == 403


async def test_a_start_step_that_fails_says_which_step_and_what_the_api_said(kube: Kube) -> None:
    with pytest.raises(StartFailed) as failed, starting("could not prepare the sandbox pod tb-x"):
        await kube.call(kube.core.create_namespaced_secret, NS, {"metadata": {"name": "tb-x"}})
    assert str(failed.value) == 'could not prepare the sandbox pod tb-x: 403 secrets is forbidden: User "x"'


async def test_a_refused_watch_raises_what_the_api_said(kube: Kube) -> None:
    with pytest.raises(StartFailed, match=r"^lost track: 403 pods is forbidden$"), starting("lost track"):
        async for _ in kube.watch(kube.core.list_namespaced_pod, 5):
            pass


async def test_an_unreachable_api_server_is_an_api_error_a_start_step_words() -> None:
    async with kube_at("http://127.0.0.1:1") as kube:  # nothing listens on port 1
        with (
            pytest.raises(StartFailed, match=r"^lost track of the sandbox pod tb-x: "),
            starting("lost track of the sandbox pod tb-x"),
        ):
            await pods.read(kube, "tb-x")


async def test_the_api_groups_refuse_before_open_and_after_close() -> None:
    async with kube_at("http://127.0.0.1:1") as kube:
        assert kube.core.api_client is kube.api  # type: ignore[attr-defined]  # set in __init__, left out of the stub
    with pytest.raises(RuntimeError, match=r"before Kube\.open\(\)"):
        _ = kube.core


class RecordingProxy(BaseHTTPRequestHandler):
    """An HTTP proxy's end of the line: it records the absolute URL it was asked for."""

    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.asked.append(self.path)
        send_json(self, 200, ANSWERS[("GET", f"{PODS}/here")][1])

    def log_message(self, *_args: Any) -> None:
        pass


def kubeconfig_for(host: str, path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": host}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


@pytest.mark.parametrize("bypass", [False, True])
async def test_the_proxy_in_the_environment_is_read_once_and_no_request_asks_the_environment_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bypass: bool
) -> None:
    FakeApiServer.seen, RecordingProxy.asked = [], []
    with serving(FakeApiServer) as host, serving(RecordingProxy) as proxy:
        for var in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy)
        if bypass:
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        kube = Kube(NS, functools.partial(load_api_client, kubeconfig_for(host, tmp_path / "kubeconfig")))
        await kube.open()
        try:
            # Each request reading the environment again (netrc, proxies) costs two worker-thread hops.
            assert kube.api.rest_client.pool_manager.trust_env is False
            pod = await pods.read(kube, "here")
        finally:
            await kube.close()
    assert pod is not None and pod["metadata"]["uid"] == "u-1"
    if bypass:
        assert RecordingProxy.asked == [] and [p for _, p, _ in FakeApiServer.seen] == [f"{PODS}/here"]
    else:
        assert RecordingProxy.asked == [f"{host}{PODS}/here"] and FakeApiServer.seen == []
