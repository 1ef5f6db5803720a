"""A Lease per thread: turns of one thread never overlap, whichever replica receives them.

The manager's in-process lock orders turns inside one controller; this orders them across
replicas. The holder is a coordination.k8s.io/v1 Lease named after the thread, so the lock
lives in the cluster, not in a replica's memory. The holder renews it while the turn runs; a
replica that dies stops renewing, and after ``duration`` seconds another may take it over.
Every write carries the resourceVersion it read, so of two replicas racing for one Lease
exactly one wins (the API server answers 409 to the other).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from controller.k8s.api import API_ERRORS, Kube, api_message
from controller.k8s.names import APP_LABEL, MANAGED_BY_LABEL, SANDBOX_APP, THREAD_LABEL

log = logging.getLogger(__name__)

LEASE_SECONDS = 30
POLL_SECONDS = 0.5


def replica_identity() -> str:
    """Unique per controller process; in a pod the hostname is the pod name, which operators know."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def lease_name(thread_id: str) -> str:
    return f"tb-turn-{thread_id}"


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_body(
    thread_id: str,
    namespace: str,
    holder: str,
    acquired: datetime,
    renewed: datetime,
    resource_version: str | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": lease_name(thread_id),
        "namespace": namespace,
        "labels": {APP_LABEL: SANDBOX_APP, MANAGED_BY_LABEL: "threadbox", THREAD_LABEL: thread_id},
    }
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version  # the write fails with 409 if it moved on
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": LEASE_SECONDS,
            "acquireTime": _stamp(acquired),
            "renewTime": _stamp(renewed),
        },
    }


def _parse(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def free_for(lease: dict[str, Any], holder: str, now: datetime) -> bool:
    """Whether ``holder`` may take this Lease: unheld, already its own, or not renewed in time."""
    spec = lease.get("spec") or {}
    current = spec.get("holderIdentity")
    if not current or current == holder:
        return True
    renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
    duration = spec.get("leaseDurationSeconds") or LEASE_SECONDS
    return renewed is None or now - renewed > timedelta(seconds=duration)


GONE_RETRIES = 5  # a Lease deleted between our create and read, in a row


class LeaseGone(Exception):
    """The Lease was deleted between the create that found it and the write that takes it."""


WAIT_MESSAGE = "Another controller replica is running a turn in this thread; waiting for it..."


class ThreadLeases:
    """Makes one TurnLease per turn; holds what every turn shares: the API, namespace and identity."""

    def __init__(self, kube: Kube, identity: str | None = None) -> None:
        self.kube = kube
        self.identity = identity or replica_identity()

    def turn(self, thread_id: str) -> TurnLease:
        return TurnLease(self, thread_id)


class TurnLease:
    """``async for note in lease.acquire(): ...`` waits (telling why) until this replica holds the
    thread's Lease and keeps renewing it; ``release()`` gives it up."""

    def __init__(self, leases: ThreadLeases, thread_id: str) -> None:
        self.kube = leases.kube
        self.leases = leases.kube.coordination
        self.identity = leases.identity
        self.name = lease_name(thread_id)
        self.thread_id = thread_id
        self._acquired = datetime.now(UTC)
        self._version: str | None = None
        self._renewer: asyncio.Task[None] | None = None

    async def acquire(self) -> AsyncIterator[str]:
        told = False
        while not await self._try_take():
            if not told:
                told = True
                yield WAIT_MESSAGE
            await asyncio.sleep(POLL_SECONDS)
        self._renewer = asyncio.create_task(self._renew())

    async def release(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        if self._version is not None:
            await asyncio.shield(self._delete(self._version))

    def _body(self, version: str | None) -> dict[str, Any]:
        return lease_body(
            self.thread_id, self.kube.ns, self.identity, self._acquired, datetime.now(UTC), version
        )

    async def _try_take(self) -> bool:
        """Whether this replica now holds the Lease; False while another replica holds it.

        The previous turn's release runs after its answer, so the next turn often finds the
        Lease existing, then gone: that is retried at once, not after a poll (a turn sent right
        after an answer waited half a second for it, and was told another replica held it).
        """
        for _ in range(GONE_RETRIES):
            self._acquired = datetime.now(UTC)
            # Turns release their Lease, so it usually does not exist: one create, no read.
            made = await self.kube.create(self.leases.create_namespaced_lease, self._body(None))
            if made is None:
                try:
                    made = await self._take_over()
                except LeaseGone:
                    continue
            if made is None:
                return False
            self._version = made["metadata"]["resourceVersion"]
            return True
        return False

    async def _take_over(self) -> dict[str, Any] | None:
        """The Lease exists: take it if its holder stopped renewing, else None (held).
        Raises LeaseGone when it was deleted meanwhile."""
        lease = await self.kube.read(self.leases.read_namespaced_lease, self.name)
        if lease is None:
            raise LeaseGone
        if not free_for(lease, self.identity, self._acquired):
            return None
        body = self._body(lease["metadata"]["resourceVersion"])
        try:
            return await self.kube.get(self.leases.replace_namespaced_lease, self.name, self.kube.ns, body)
        except ApiException as exc:
            if exc.status == 404:
                raise LeaseGone from None
            if exc.status == 409:  # another replica wrote first: it holds the Lease
                return None
            raise

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            body = self._body(self._version)
            try:
                renewed = await self.kube.get(
                    self.leases.replace_namespaced_lease, self.name, self.kube.ns, body
                )
            except ApiException as exc:
                # Lost: another replica took over a Lease we failed to renew in time. The turn
                # goes on; the next turn waits for the Lease again.
                log.error("lost the turn Lease of thread %s: %s", self.thread_id, api_message(exc))
                self._version = None
                return
            except API_ERRORS as exc:  # no answer: the Lease lasts two more tries
                log.warning(
                    "could not renew the turn Lease of thread %s: %s", self.thread_id, api_message(exc)
                )
                continue
            self._version = renewed["metadata"]["resourceVersion"]

    async def _delete(self, version: str) -> None:
        # Only the Lease as we last wrote it: one taken over by another replica stays theirs.
        try:
            await self.kube.delete(self.leases.delete_namespaced_lease, self.name, resource_version=version)
        except API_ERRORS as exc:
            log.warning("could not release the turn Lease of thread %s: %s", self.thread_id, api_message(exc))
