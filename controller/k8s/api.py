"""API server plumbing shared by the backend and the warm pool: the only module here doing I/O.

The official client is blocking: every call runs in a worker thread. Reads use
``_preload_content=False`` and decode the API's JSON, so the pure helpers in
controller/k8s/podstate.py see exactly what the API sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from controller.k8s import objects, podstate

log = logging.getLogger(__name__)

API_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError)


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


def status_of(exc: BaseException) -> int | None:
    return exc.status if isinstance(exc, ApiException) else None


def as_json(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call the API and decode its own JSON: the client's models would hide fields and need None checks."""
    resp = fn(*args, _preload_content=False, _request_timeout=30, **kwargs)
    return dict(json.loads(resp.data))


class Kube:
    """One namespace's pods and Secrets, as plain manifests."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.core = client.CoreV1Api(api)
        self.net = client.NetworkingV1Api(api)

    async def get(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        return await asyncio.to_thread(as_json, fn, *args, **kwargs)

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(fn, *args, _request_timeout=30, **kwargs)

    async def read_pod(self, name: str) -> dict[str, Any] | None:
        try:
            return await self.get(self.core.read_namespaced_pod, name, self.ns)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def create_pod(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create the pod, then make it the owner of its same-named Secret (created first)."""
        pod = await self.get(self.core.create_namespaced_pod, self.ns, body)
        name = pod["metadata"]["name"]
        try:
            patch = objects.secret_owner_patch(name, podstate.uid(pod))
            await self.call(self.core.patch_namespaced_secret, name, self.ns, patch)
        except API_ERRORS as exc:  # stop() and the sweep delete an ownerless Secret, so go on
            log.warning("could not set the owner of Secret %s: %s", name, api_message(exc))
        return pod

    async def delete_pod(self, name: str, uid: str, wait: bool = True) -> None:
        # The UID precondition keeps a stale caller from deleting a newer pod of the same name.
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
        try:
            await self.call(self.core.delete_namespaced_pod, name, self.ns, body=options)
        except ApiException as exc:
            if exc.status in (404, 409):
                return  # gone already, or the name belongs to another pod now
            raise
        if not wait:
            return
        deadline = time.monotonic() + objects.TERMINATION_GRACE_SECONDS + 30
        while time.monotonic() < deadline:
            pod = await self.read_pod(name)
            if pod is None or podstate.uid(pod) != uid:
                return
            await asyncio.sleep(0.25)
        log.warning(
            "sandbox pod %s still exists %ss after deletion", name, objects.TERMINATION_GRACE_SECONDS + 30
        )

    async def delete_secret(self, name: str, owner_uid: str | None) -> None:
        """Delete the Secret if it is unowned or owned by ``owner_uid`` (not a newer pod's)."""
        try:
            secret = await self.get(self.core.read_namespaced_secret, name, self.ns)
            owners = {o.get("uid") for o in secret["metadata"].get("ownerReferences") or []}
            if owners and owner_uid not in owners:
                return
            options = client.V1DeleteOptions(
                preconditions=client.V1Preconditions(uid=secret["metadata"]["uid"])
            )
            await self.call(self.core.delete_namespaced_secret, name, self.ns, body=options)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    async def delete_quietly(self, name: str) -> None:
        """Remove a pod and its Secret that nobody else knows yet (a failed or cancelled start)."""
        try:
            pod = await self.read_pod(name)
            if pod is not None:
                await self.delete_pod(name, podstate.uid(pod))
            await self.delete_secret(name, owner_uid=podstate.uid(pod) if pod else None)
        except API_ERRORS as exc:
            log.warning("could not clean up sandbox %s after a failed start: %s", name, api_message(exc))
