"""A Lease per thread: turns of one thread never overlap, whichever replica receives them.

The manager's in-process lock orders turns inside one controller; this orders them across
replicas. The holder is a coordination.k8s.io/v1 Lease named after the thread, so the lock
lives in the cluster, not in a replica's memory. The holder renews it while it holds it; a
replica that dies stops renewing, and after ``duration`` seconds another may take it over.
Every write carries the resourceVersion it read, so of two replicas racing for one Lease
exactly one wins (the API server answers 409 to the other).

A replica keeps a thread's Lease for ``LINGER_SECONDS`` after a turn, so the thread's next turn
here takes it with no API call: the Lease write is off the answer's path. Another replica that
wants the thread meanwhile asks for it (the ``WANTED`` annotation); the holder sees that on its
watch of turn Leases and gives the Lease up at once if no turn runs, or when its turn ends. The
asker learns of the release from its own watch. A replica that crashes while it lingers holds
the thread until the Lease expires, as it would in a turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from controller.k8s.api import API_ERRORS, Kube, api_message
from controller.k8s.names import (
    APP_LABEL,
    MANAGED_BY_LABEL,
    SANDBOX_APP,
    THREAD_LABEL,
    all_sandboxes_selector,
)
from controller.k8s.watch import Handlers, ListWatch
from controller.tasks import TaskSet

log = logging.getLogger(__name__)

LEASE_SECONDS = 30
POLL_SECONDS = 0.5  # the longest wait between two looks at a Lease held elsewhere
LINGER_SECONDS = LEASE_SECONDS / 3
WANTED = "threadbox.dev/wanted-by"  # the replica that asks the holder to give the Lease up


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


def held_by(lease: dict[str, Any]) -> str | None:
    return (lease.get("spec") or {}).get("holderIdentity")


def asked_by(lease: dict[str, Any]) -> str | None:
    """The replica that asked the holder for the Lease (``WANTED``), if one did."""
    return (lease["metadata"].get("annotations") or {}).get(WANTED)


def free_for(lease: dict[str, Any], holder: str, now: datetime) -> bool:
    """Whether ``holder`` may take this Lease: unheld, already its own, or not renewed in time."""
    spec = lease.get("spec") or {}
    current = held_by(lease)
    if not current or current == holder:
        return True
    renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
    duration = spec.get("leaseDurationSeconds") or LEASE_SECONDS
    return renewed is None or now - renewed > timedelta(seconds=duration)


GONE_RETRIES = 5  # a Lease deleted between our create and read, in a row


class LeaseGone(Exception):
    """The Lease was deleted between the create that found it and the write that takes it."""


WAIT_MESSAGE = "Another controller replica is running a turn in this thread; waiting for it..."


def _leases(kube: Kube) -> Callable[..., Any]:
    return kube.coordination.list_namespaced_lease


@dataclass
class Holding:
    """A Lease this replica holds: in a turn (``turn`` is that turn's handle) or lingering after one."""

    thread_id: str
    version: str
    turn: TurnLease | None
    wanted: bool = False  # another replica asked for it
    tasks: TaskSet = field(default_factory=lambda: TaskSet("a turn Lease's renewal"))
    linger: asyncio.Task[None] | None = None


class ThreadLeases:
    """This replica's turn Leases: the ones it holds, and one watch of every turn Lease in the
    namespace, which tells a holder that its Lease is wanted and an asker that it is free."""

    def __init__(self, kube: Kube, identity: str | None = None, linger: float = LINGER_SECONDS) -> None:
        self.kube = kube
        self.identity = identity or replica_identity()
        self.linger = linger
        self.held: dict[str, Holding] = {}
        self._freed: dict[str, asyncio.Event] = {}  # Lease name -> set when it is deleted
        self._dropping = TaskSet("turn Lease releases")
        self._lingering = TaskSet("turn Leases kept after their turn")
        self._watch = ListWatch(
            kube, all_sandboxes_selector(), Handlers(self._listed, self._changed, self._removed), _leases
        )

    def turn(self, thread_id: str) -> TurnLease:
        return TurnLease(self, thread_id)

    def start(self) -> None:
        self._watch.start("turn-lease-watch")

    async def close(self) -> None:
        await self._watch.close()
        for thread_id in list(self.held):
            await self.drop(thread_id)
        await self._dropping.drain()
        await self._lingering.drain(timeout=0)

    async def freed(self, name: str, timeout: float) -> None:
        """Until the named Lease is deleted, or ``timeout`` seconds pass."""
        event = self._freed.setdefault(name, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        self._freed.pop(name, None)

    def park(self, holding: Holding) -> None:
        """A turn ended: keep the Lease a while for the thread's next turn, unless it is wanted."""
        holding.turn = None
        if holding.wanted or self.linger <= 0:
            self._dropping.spawn(self.drop(holding.thread_id))
        else:
            holding.linger = self._lingering.spawn(self._expire(holding))

    async def _expire(self, holding: Holding) -> None:
        await asyncio.sleep(self.linger)
        holding.linger = None
        await self.drop(holding.thread_id)

    async def drop(self, thread_id: str) -> None:
        """Give the thread's Lease up (unless a turn holds it now)."""
        holding = self.held.get(thread_id)
        if holding is None or holding.turn is not None:
            return
        del self.held[thread_id]
        if holding.linger is not None and holding.linger is not asyncio.current_task():
            holding.linger.cancel()
        await holding.tasks.drain(timeout=0)
        try:
            await self._delete(holding)
        except API_ERRORS as exc:
            log.warning("could not release the turn Lease of thread %s: %s", thread_id, api_message(exc))

    async def _delete(self, holding: Holding) -> None:
        """Only the Lease as it stands while ours: one taken over by another replica stays theirs.
        An asker's annotation moves the version on; then it is read again, and deleted if still ours."""
        name, coordination = lease_name(holding.thread_id), self.kube.coordination
        for _ in range(GONE_RETRIES):
            if await self.kube.delete(
                coordination.delete_namespaced_lease, name, resource_version=holding.version
            ):
                return
            if not await self.still_mine(holding):
                return

    async def still_mine(self, holding: Holding) -> bool:
        """Whether this replica still holds the Lease, its version brought up to date."""
        lease = await self.kube.read(
            self.kube.coordination.read_namespaced_lease, lease_name(holding.thread_id)
        )
        if lease is None or held_by(lease) != self.identity:
            return False
        holding.version = str(lease["metadata"]["resourceVersion"])
        return True

    def _listed(self, leases: list[dict[str, Any]]) -> None:
        for lease in leases:
            self._changed(lease)

    def _changed(self, lease: dict[str, Any]) -> None:
        meta = lease["metadata"]
        holding = self.held.get((meta.get("labels") or {}).get(THREAD_LABEL, ""))
        if holding is None or held_by(lease) != self.identity:
            return
        holding.version = str(meta["resourceVersion"])  # an asker's annotation moved it on
        if asked_by(lease) not in (None, self.identity) and not holding.wanted:
            holding.wanted = True
            if holding.turn is None:  # lingering: give it up now
                self._dropping.spawn(self.drop(holding.thread_id))

    def _removed(self, lease: dict[str, Any]) -> None:
        event = self._freed.get(str(lease["metadata"]["name"]))
        if event is not None:
            event.set()


class TurnLease:
    """``async for note in lease.acquire(): ...`` waits (telling why) until this replica holds the
    thread's Lease; ``release()`` ends the turn (the Lease lingers, see the module's docstring)."""

    def __init__(self, leases: ThreadLeases, thread_id: str) -> None:
        self.owner = leases
        self.kube = leases.kube
        self.identity = leases.identity
        self.name = lease_name(thread_id)
        self.thread_id = thread_id
        self._acquired = datetime.now(UTC)
        self._holding: Holding | None = None

    async def acquire(self) -> AsyncIterator[str]:
        # Turns of one thread in one replica are ordered by the manager's lock: a Lease held
        # here belongs to an ended turn, and is this one's with no API call.
        holding = self.owner.held.get(self.thread_id)
        if holding is not None and not holding.wanted:
            self._reuse(holding)
            return
        polls = 0
        while (version := await self._try_take()) is None:
            if polls == 1:  # a holder that only lingers gives the Lease up before one poll ends
                yield WAIT_MESSAGE
            await self.owner.freed(self.name, POLL_SECONDS)
            polls += 1
        self._hold(version)

    def _reuse(self, holding: Holding) -> None:
        if holding.linger is not None:
            holding.linger.cancel()
            holding.linger = None
        holding.turn, self._holding = self, holding

    def _hold(self, version: str) -> None:
        holding = Holding(self.thread_id, version, self)
        self.owner.held[self.thread_id] = self._holding = holding
        holding.tasks.spawn(self._renew(holding))

    async def release(self) -> None:
        if self._holding is not None and self._holding.turn is self:
            self.owner.park(self._holding)

    def _body(self, version: str | None) -> dict[str, Any]:
        return lease_body(
            self.thread_id, self.kube.ns, self.identity, self._acquired, datetime.now(UTC), version
        )

    async def _try_take(self) -> str | None:
        """The Lease's version once this replica holds it; None while another replica holds it.

        A Lease that existed, then was gone, is retried at once, not after a poll.
        """
        for _ in range(GONE_RETRIES):
            self._acquired = datetime.now(UTC)
            # Turns release their Lease, so it usually does not exist: one create, no read.
            made = await self.kube.create(self.kube.coordination.create_namespaced_lease, self._body(None))
            if made is None:
                try:
                    made = await self._take_over()
                except LeaseGone:
                    continue
            return None if made is None else str(made["metadata"]["resourceVersion"])
        return None

    async def _take_over(self) -> dict[str, Any] | None:
        """The Lease exists: take it if its holder stopped renewing, else ask for it and None.
        Raises LeaseGone when it was deleted meanwhile."""
        lease = await self.kube.read(self.kube.coordination.read_namespaced_lease, self.name)
        if lease is None:
            raise LeaseGone
        if not free_for(lease, self.identity, self._acquired):
            await self._ask(lease)
            return None
        try:
            return await self._replace(self._body(lease["metadata"]["resourceVersion"]))
        except ApiException as exc:
            if exc.status == 404:
                raise LeaseGone from None
            if exc.status == 409:  # another replica wrote first: it holds the Lease
                return None
            raise

    async def _ask(self, lease: dict[str, Any]) -> None:
        """Ask the holder to give the Lease up when its turn ends (it may be only lingering)."""
        if asked_by(lease) == self.identity:
            return
        patch = {"metadata": {"annotations": {WANTED: self.identity}}}
        try:
            await self.kube.call(
                self.kube.coordination.patch_namespaced_lease, self.name, self.kube.ns, patch
            )
        except ApiException as exc:
            if exc.status != 404:  # gone already: the next look takes it
                raise

    async def _replace(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.kube.get(
            self.kube.coordination.replace_namespaced_lease, self.name, self.kube.ns, body
        )

    async def _renew(self, holding: Holding) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            try:
                renewed = await self._replace(self._body(holding.version))
            except ApiException as exc:
                if exc.status == 409 and await self.owner.still_mine(holding):
                    continue  # an asker's annotation moved the version on; renew with the new one
                # Lost: another replica took over a Lease we failed to renew in time. The turn
                # goes on; the next turn waits for the Lease again.
                log.error("lost the turn Lease of thread %s: %s", self.thread_id, api_message(exc))
                self.owner.held.pop(self.thread_id, None)
                return
            except API_ERRORS as exc:  # no answer: the Lease lasts two more tries
                log.warning(
                    "could not renew the turn Lease of thread %s: %s", self.thread_id, api_message(exc)
                )
                continue
            holding.version = str(renewed["metadata"]["resourceVersion"])
