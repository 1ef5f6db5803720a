"""A sandbox pod and its same-named Secret: create, wait for, and delete them, on a ``Kube``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from controller.k8s import objects, podstate
from controller.k8s.api import API_ERRORS, Kube, api_message, starting
from controller.k8s.errors import StartFailed
from controller.k8s.podcache import PodCache

log = logging.getLogger(__name__)

DELETE_POLL_SECONDS = 0.25
DELETE_BACKSTOP_SECONDS = 2.0  # how long a deletion trusts a watch that has not seen it yet


async def read(kube: Kube, name: str) -> dict[str, Any] | None:
    return await kube.read(kube.core.read_namespaced_pod, name)


async def create(kube: Kube, body: dict[str, Any]) -> dict[str, Any]:
    """Create the pod, then make it the owner of its same-named Secret (created first)."""
    pod = await kube.get(kube.core.create_namespaced_pod, kube.ns, body)
    name = pod["metadata"]["name"]
    try:
        patch = objects.secret_owner_patch(name, podstate.uid(pod))
        await kube.call(kube.core.patch_namespaced_secret, name, kube.ns, patch)
    except API_ERRORS as exc:  # stop() and the sweep delete an ownerless Secret, so go on
        log.warning("could not set the owner of Secret %s: %s", name, api_message(exc))
    return pod


async def delete(kube: Kube, name: str, uid: str, wait: bool = True, cache: PodCache | None = None) -> None:
    """Delete the pod of this UID (not a newer one of the same name); with ``wait``, until it is gone.

    With a synced ``cache`` the wait is for the watch to see the pod go, which the API server
    then confirms: a pod saving its files on SIGTERM takes seconds, and reading it four times
    a second for each of a burst's stopped pods cost the API server and this loop more than
    the stops themselves. Without one, the API server is asked every ``DELETE_POLL_SECONDS``.
    """
    await kube.delete(kube.core.delete_namespaced_pod, name, uid=uid)
    if not wait:
        return
    patience = objects.TERMINATION_GRACE_SECONDS + 30
    deadline = time.monotonic() + patience
    while (remaining := deadline - time.monotonic()) > 0:
        if cache is not None and cache.synced:
            await cache.gone(name, uid, min(remaining, DELETE_BACKSTOP_SECONDS))
        pod = await read(kube, name)
        if pod is None or podstate.uid(pod) != uid:
            return
        if cache is None or not cache.synced:
            await asyncio.sleep(DELETE_POLL_SECONDS)
    log.warning("sandbox pod %s still exists %ss after deletion", name, patience)


async def delete_secret(kube: Kube, name: str, owner_uid: str | None) -> None:
    """Delete the Secret if it is unowned or owned by ``owner_uid`` (not a newer pod's)."""
    secret = await kube.read(kube.core.read_namespaced_secret, name)
    if secret is None:
        return
    owners = {o.get("uid") for o in secret["metadata"].get("ownerReferences") or []}
    if owners and owner_uid not in owners:
        return
    await kube.delete(kube.core.delete_namespaced_secret, name, uid=secret["metadata"]["uid"])


async def delete_quietly(kube: Kube, name: str) -> None:
    """Remove a pod and its Secret that nobody else knows yet (a failed or cancelled start)."""
    try:
        pod = await read(kube, name)
        if pod is not None:
            await delete(kube, name, podstate.uid(pod))
        await delete_secret(kube, name, owner_uid=podstate.uid(pod) if pod else None)
    except API_ERRORS as exc:
        log.warning("could not clean up sandbox %s after a failed start: %s", name, api_message(exc))


async def clear_leftovers(kube: Kube, name: str) -> None:
    """A dead or terminating pod (and its Secret) of this name must go before a new one."""
    pod = await read(kube, name)
    if pod is not None:
        await delete(kube, name, podstate.uid(pod))
    await delete_secret(kube, name, owner_uid=None)


async def start(
    kube: Kube, name: str, secret: dict[str, Any], pod: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Create the Secret and the pod, and wait until it runs; the running pod's manifest.

    Raises StartFailed; nothing of this start is left behind when it fails or is cancelled.
    """
    with starting(f"could not prepare the sandbox pod {name}"):
        await clear_leftovers(kube, name)
        await kube.call(kube.core.create_namespaced_secret, kube.ns, secret)
    try:
        with starting(f"could not create the sandbox pod {name}"):
            await create(kube, pod)
        return await _wait_running(kube, name, timeout)
    except BaseException:
        # Nobody else knows this pod yet: remove it now, even when the start was cancelled.
        await asyncio.shield(delete_quietly(kube, name))
        raise


async def _wait_running(kube: Kube, name: str, timeout: float) -> dict[str, Any]:
    """Watch the pod until it runs with an IP; fail at once on reasons that will not clear."""
    deadline = time.monotonic() + timeout
    waiting_on = "the pod to be scheduled"
    with starting(f"lost track of the sandbox pod {name}"):
        while (remaining := deadline - time.monotonic()) > 0:
            events = kube.watch(
                kube.core.list_namespaced_pod, remaining, field_selector=f"metadata.name={name}"
            )
            async with contextlib.aclosing(events):
                async for kind, pod in events:
                    if kind == "DELETED":
                        raise StartFailed(f"the sandbox pod {name} was deleted while starting")
                    if kind not in ("ADDED", "MODIFIED"):
                        break  # ERROR (e.g. resource version too old): watch again
                    progress = podstate.start_progress(pod)
                    if progress.error:
                        raise StartFailed(f"sandbox pod {name}: {progress.error}")
                    if progress.running:
                        return pod
                    waiting_on = progress.waiting_on
    raise StartFailed(f"the sandbox pod {name} was not running after {timeout:g}s (waiting on {waiting_on})")
