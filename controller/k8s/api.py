"""The one way to the API server: every module of controller/k8s calls it through ``Kube``.

The policy, in one place:

- Timeout: the official client is blocking, so every request runs in a worker thread
  (``asyncio.to_thread``) with the same ``REQUEST_TIMEOUT``. A watch, which the server itself
  ends after its ``timeout_seconds``, gets that long plus ``REQUEST_TIMEOUT``.
- Reads decode the API's own JSON (``_preload_content=False``): the client's models would hide
  fields, and the pure helpers in podstate.py see exactly what the API sent.
- Errors: a read answered 404 is None (``read``); a create answered 409 means the object
  exists (``create`` returns None); a delete answered 404 or 409 is done (the object is gone,
  or the precondition names one that is no longer there). Every other failure (``API_ERRORS``)
  propagates as raised, and nothing here retries. A step of a sandbox start wraps it with
  ``starting()`` into StartFailed, which the backend answers as a failed start; background
  work logs ``api_message()`` and carries on: the pool and the watches try again, liveness
  keeps its last answer, an Event is dropped, a Lease renewal tries again unless refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

API_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError)
REQUEST_TIMEOUT = 30


class StartFailed(Exception):
    """A step of a sandbox start failed; the message says which and why, in a sentence."""


def load_api_client(kubeconfig: Path | None) -> client.ApiClient:
    cfg = client.Configuration()
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig) if kubeconfig else None, client_configuration=cfg
            )
    except (ConfigException, OSError) as exc:
        raise RuntimeError(
            f"backend=kubernetes: no usable cluster configuration ({exc}); set THREADBOX_KUBECONFIG"
        ) from exc
    return client.ApiClient(cfg)


def api_message(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        try:
            return f"{exc.status} {json.loads(exc.body or '')['message']}"
        except (TypeError, ValueError, KeyError):
            return f"{exc.status} {exc.reason}"
    return str(exc)


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
    """One namespace of the API server, its objects as plain manifests."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.core = client.CoreV1Api(api)
        self.net = client.NetworkingV1Api(api)
        self.coordination = client.CoordinationV1Api(api)

    async def get(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        """``fn``'s answer, decoded from the API's JSON."""
        return await asyncio.to_thread(self.get_blocking, fn, *args, **kwargs)

    def get_blocking(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        """``get`` for code already in a worker thread (a watch)."""
        resp = fn(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        return dict(json.loads(resp.data))

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """``fn``, its answer unread: a write whose result nobody needs."""
        await asyncio.to_thread(fn, *args, _request_timeout=REQUEST_TIMEOUT, **kwargs)

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
    ) -> None:
        """Delete the object if it is still the one named by ``uid`` / ``resource_version``."""
        try:
            body = _delete_options(uid, resource_version) if uid or resource_version else None
            await self.call(fn, name, self.ns, body=body)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def watch(
        self, fn: Callable[..., Any], timeout: float, **kwargs: Any
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """The events of one watch request as (type, object as sent), for ``timeout`` seconds.

        Blocking: iterate it in a worker thread. An ERROR event (e.g. a resourceVersion too
        old) is yielded like any other; the caller lists again.
        """
        w = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            for event in w.stream(  # type: ignore[no-untyped-call]
                fn,
                self.ns,
                timeout_seconds=max(1, int(timeout)),
                _request_timeout=timeout + REQUEST_TIMEOUT,
                deserialize=False,
                **kwargs,
            ):
                yield str(event["type"]), dict(event["object"])
        finally:
            w.stop()  # type: ignore[no-untyped-call]
