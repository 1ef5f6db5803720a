"""The one way to the API server: every module of controller/k8s calls it through ``Kube``.

The policy, in one place:

- Client: kubernetes_asyncio, the official client's generated API on aiohttp, so requests are
  awaited on the event loop. ``Kube`` owns the one ApiClient of a controller: ``open()`` loads
  the cluster configuration and makes it, ``close()`` closes its connections.
- Timeout: every request has the same ``REQUEST_TIMEOUT``. A watch, which the server itself
  ends after its ``timeout_seconds``, gets that long plus ``REQUEST_TIMEOUT``.
- Reads decode the API's own JSON (``_preload_content=False``): the client's models would hide
  fields, and the pure helpers in podstate.py see exactly what the API sent. With the raw
  response the client raises nothing on a non-2xx answer: ``_send`` raises its ApiException.
- Errors: a read answered 404 is None (``read``); a create answered 409 means the object
  exists (``create`` returns None); a delete answered 404 or 409 is done (the object is gone,
  or the precondition names one that is no longer there). Every other failure (``API_ERRORS``)
  propagates as raised, and nothing here retries. A step of a sandbox start wraps it with
  ``starting()`` into StartFailed, which the backend answers as a failed start; background
  work logs ``api_message()`` and carries on: the pool and the watches try again, liveness
  keeps its last answer, an Event is dropped, a Lease renewal tries again unless refused.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException
from yarl import URL

from controller.k8s.errors import StartFailed

# TimeoutError is asyncio's timeout too (Python 3.11+): a request over REQUEST_TIMEOUT.
API_ERRORS = (ApiException, aiohttp.ClientError, TimeoutError, OSError)
REQUEST_TIMEOUT = 30
READ_BUFSIZE = 2**21  # kubernetes_asyncio's own: one watch event can carry a large object


async def load_api_client(kubeconfig: Path | None) -> client.ApiClient:
    cfg = client.Configuration()
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            await config.load_kube_config(
                config_file=str(kubeconfig) if kubeconfig else None, client_configuration=cfg
            )
    except (ConfigException, OSError) as exc:
        raise RuntimeError(
            f"backend=kubernetes: no usable cluster configuration ({exc}); set THREADBOX_KUBECONFIG"
        ) from exc
    api = client.ApiClient(cfg)
    _environment_read_once(api, cfg.host or "")
    return api


def _environment_read_once(api: client.ApiClient, host: str) -> None:
    """The client's aiohttp session trusts the environment, and so reads ``~/.netrc`` and the
    proxy variables in a worker thread on every request: two thread hops per API call, which
    in a burst of claims contend with the event loop for the GIL. The proxy is read once here
    instead (a kubeconfig's proxy-url wins); a netrc file is no way to log in to an API server."""
    rest = api.rest_client
    if not rest.proxy:
        with contextlib.suppress(LookupError):
            proxy, auth = get_env_proxy_for_url(URL(host))
            rest.proxy = str(proxy)
            if auth is not None:
                rest.proxy_headers = {"Proxy-Authorization": auth.encode()}
    connector = rest.pool_manager.connector
    rest.pool_manager.detach()  # the connector (its TLS context and pool) stays open, ours now
    rest.pool_manager = aiohttp.ClientSession(connector=connector, read_bufsize=READ_BUFSIZE)


def api_message(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        try:
            return f"{exc.status} {json.loads(exc.body or '')['message']}"
        except (TypeError, ValueError, KeyError):
            return f"{exc.status} {exc.reason}"
    return str(exc) or type(exc).__name__  # a timeout's message is empty


@contextlib.contextmanager
def starting(step: str) -> Iterator[None]:
    """Turn an API failure during ``step`` (a sentence's start) into StartFailed."""
    try:
        yield
    except API_ERRORS as exc:
        raise StartFailed(f"{step}: {api_message(exc)}") from exc


def _delete_options(uid: str | None, resource_version: str | None) -> client.V1DeleteOptions:
    # A precondition keeps a stale caller from deleting a newer object of the same name.
    return client.V1DeleteOptions(
        preconditions=client.V1Preconditions(uid=uid, resource_version=resource_version)
    )


class Kube:
    """One namespace of the API server, its objects as plain manifests.

    ``connect`` makes the ApiClient; it runs in ``open()``, since loading a kubeconfig and
    making an aiohttp session both need the event loop. Until then the API groups raise.
    """

    def __init__(self, namespace: str, connect: Callable[[], Awaitable[client.ApiClient]]) -> None:
        self.ns = namespace
        self._connect = connect
        self._api: client.ApiClient | None = None

    async def open(self) -> None:
        if self._api is None:
            self._api = await self._connect()

    async def close(self) -> None:
        api, self._api = self._api, None
        if api is not None:
            await api.close()

    @property
    def api(self) -> client.ApiClient:
        if self._api is None:
            raise RuntimeError("the Kubernetes API client is used before Kube.open()")
        return self._api

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def net(self) -> client.NetworkingV1Api:
        return client.NetworkingV1Api(self.api)

    @property
    def coordination(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.api)

    async def get(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        """``fn``'s answer, decoded from the API's JSON."""
        return dict(json.loads(await self._send(fn, *args, **kwargs)))

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """``fn``, its answer unread: a write whose result nobody needs."""
        await self._send(fn, *args, **kwargs)

    async def read(self, fn: Callable[..., Any], name: str, **kwargs: Any) -> dict[str, Any] | None:
        """The named object, or None if it does not exist."""
        try:
            return await self.get(fn, name, self.ns, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def create(self, fn: Callable[..., Any], body: dict[str, Any]) -> dict[str, Any] | None:
        """The object as created, or None if one of that name exists."""
        try:
            return await self.get(fn, self.ns, body)
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise

    async def delete(
        self, fn: Callable[..., Any], name: str, uid: str | None = None, resource_version: str | None = None
    ) -> bool:
        """Delete the object if it is still the one named by ``uid`` / ``resource_version``;
        False if it is not (the precondition failed), True if it is deleted or already gone."""
        try:
            body = _delete_options(uid, resource_version) if uid or resource_version else None
            await self.call(fn, name, self.ns, body=body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            if exc.status != 404:
                raise
        return True

    async def watch(
        self, fn: Callable[..., Any], timeout: float, **kwargs: Any
    ) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        """The events of one watch request as (type, object as sent), for ``timeout`` seconds.

        An ERROR event (e.g. a resourceVersion too old) is yielded like any other; the caller
        lists again. The stream is read here rather than through kubernetes_asyncio's Watch:
        each Watch makes its own ApiClient (an SSL context, ~45 ms of blocked event loop) to
        build models nobody reads, and it raises an ERROR event instead of handing it over.
        """
        resp = await self._request(
            fn,
            self.ns,
            watch=True,
            timeout_seconds=max(1, int(timeout)),
            timeout=timeout + REQUEST_TIMEOUT,
            **kwargs,
        )
        async with resp:
            async for line in resp.content:
                if line.strip():
                    event = json.loads(line)
                    yield str(event["type"]), dict(event["object"])

    async def _send(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        resp = await self._request(fn, *args, timeout=REQUEST_TIMEOUT, **kwargs)
        async with resp:
            return bytes(await resp.read())

    async def _request(
        self, fn: Callable[..., Any], *args: Any, timeout: float, **kwargs: Any
    ) -> aiohttp.ClientResponse:
        """The raw response of a 2xx answer; any other raises the ApiException the client would."""
        resp: aiohttp.ClientResponse = await fn(
            *args, _preload_content=False, _request_timeout=timeout, **kwargs
        )
        if not 200 <= resp.status <= 299:
            async with resp:
                exc = ApiException(status=resp.status, reason=resp.reason)
                exc.body, exc.headers = await resp.read(), resp.headers
            raise exc
        return resp
