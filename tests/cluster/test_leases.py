"""Turn Leases on the real API server: one holder per thread across replicas, and takeover after a crash."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client, config

from controller.k8s.api import Kube, load_api_client
from controller.k8s.lease import LEASE_SECONDS, LINGER_SECONDS, ThreadLeases, lease_body, lease_name
from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.cluster


@contextlib.asynccontextmanager
async def _replicas(
    cluster: Cluster, n: int, linger: float = LINGER_SECONDS
) -> AsyncIterator[list[ThreadLeases]]:
    kube = Kube(cluster.namespace, functools.partial(load_api_client, cluster.kubeconfig))
    await kube.open()
    replicas = [ThreadLeases(kube, identity=f"replica-{i}", linger=linger) for i in range(n)]
    for leases in replicas:
        leases.start()
    try:
        yield replicas
    finally:
        for leases in replicas:
            await leases.close()
        await kube.close()


@contextlib.asynccontextmanager
async def held(leases: ThreadLeases, thread_id: str, waits: list[str]) -> AsyncIterator[None]:
    lease = leases.turn(thread_id)
    async for note in lease.acquire():
        waits.append(note)
    try:
        yield
    finally:
        await lease.release()


def _lease(cluster: Cluster, thread_id: str) -> Any:
    coord = client.CoordinationV1Api(config.new_client_from_config(str(cluster.kubeconfig)))  # type: ignore[no-untyped-call]
    try:
        return coord.read_namespaced_lease(lease_name(thread_id), cluster.namespace)
    except client.ApiException as exc:
        assert exc.status == 404
        return None


def test_turns_of_one_thread_never_overlap_across_replicas(cluster: Cluster) -> None:
    inside: list[str] = []
    overlaps: list[tuple[str, ...]] = []
    waits: list[str] = []

    async def turn(leases: ThreadLeases) -> None:
        async with held(leases, "t-lease-race", waits):
            inside.append(leases.identity)
            if len(inside) > 1:
                overlaps.append(tuple(inside))
            await asyncio.sleep(0.3)
            inside.remove(leases.identity)

    async def main() -> None:
        async with _replicas(cluster, 5) as replicas:  # within one replica the manager's lock orders turns
            await asyncio.gather(*(turn(r) for r in replicas))

    asyncio.run(main())
    assert overlaps == []
    assert len(waits) >= 2  # those that lost the race again were told they wait for another replica
    assert _lease(cluster, "t-lease-race") is None  # given up when the replicas closed


def test_a_crashed_holder_is_taken_over_after_the_lease_expires(cluster: Cluster) -> None:
    stale = datetime.now(UTC) - timedelta(seconds=LEASE_SECONDS + 5)
    body = lease_body("t-lease-crash", cluster.namespace, "crashed-replica", stale, stale)
    coord = client.CoordinationV1Api(config.new_client_from_config(str(cluster.kubeconfig)))  # type: ignore[no-untyped-call]
    coord.create_namespaced_lease(cluster.namespace, body)  # type: ignore[arg-type]  # a dict body goes as is
    waits: list[str] = []

    async def main() -> str:
        async with _replicas(cluster, 1) as [survivor], held(survivor, "t-lease-crash", waits):
            return str(_lease(cluster, "t-lease-crash").spec.holder_identity)

    assert asyncio.run(main()) == "replica-0"
    assert waits == []


def test_a_live_holder_keeps_its_lease(cluster: Cluster) -> None:
    waits: list[str] = []

    async def main() -> None:
        async with _replicas(cluster, 2) as [holder, other]:
            async with held(holder, "t-lease-live", waits):
                contender = asyncio.create_task(_enter(other, waits))
                await asyncio.sleep(1.5)
                assert not contender.done()  # still waiting while the holder renews
            await asyncio.wait_for(contender, 10)

    async def _enter(leases: ThreadLeases, sink: list[str]) -> None:
        async with held(leases, "t-lease-live", sink):
            pass

    asyncio.run(main())
    assert len(waits) == 1


def test_a_turn_right_after_an_answer_never_waits_for_the_release(cluster: Cluster) -> None:
    """The previous turn's release runs after its answer; the next turn of the same replica may
    find the Lease there, then gone. It must take it without waiting or a "another replica"
    note (it used to poll, half a second, and say so)."""

    async def back_to_back() -> list[str]:
        notes: list[str] = []
        releasing = []
        async with _replicas(cluster, 1) as [leases]:
            for _ in range(30):
                lease = leases.turn("t-quick")
                async for note in lease.acquire():
                    notes.append(note)
                releasing.append(asyncio.create_task(lease.release()))  # as the manager does
            await asyncio.gather(*releasing)
        return notes

    assert asyncio.run(asyncio.wait_for(back_to_back(), 120)) == []
    assert _lease(cluster, "t-quick") is None  # given up when the replica closed


def test_the_next_turn_here_takes_the_kept_lease_with_no_api_call(cluster: Cluster) -> None:
    async def two_turns() -> tuple[str, str]:
        async with _replicas(cluster, 1) as [leases]:
            async with held(leases, "t-kept", []):
                first = _lease(cluster, "t-kept").metadata.resource_version
            async with held(leases, "t-kept", []):
                second = _lease(cluster, "t-kept").metadata.resource_version
        return str(first), str(second)

    first, second = asyncio.run(asyncio.wait_for(two_turns(), 60))
    assert first == second  # not written again


def test_a_kept_lease_is_handed_to_another_replica_that_asks(cluster: Cluster) -> None:
    """A replica keeps the Lease after its turn (here for far longer than the test may take);
    another replica's turn asks for it and gets it as soon as the holder sees the request."""

    async def handoff() -> tuple[float, list[str], str]:
        notes: list[str] = []
        async with _replicas(cluster, 2, linger=3600) as [first, second]:
            async with held(first, "t-handoff", notes):
                pass
            assert _lease(cluster, "t-handoff").spec.holder_identity == "replica-0"  # kept
            started = time.monotonic()
            async with held(second, "t-handoff", notes):
                holder = str(_lease(cluster, "t-handoff").spec.holder_identity)
            return time.monotonic() - started, notes, holder

    took, notes, holder = asyncio.run(asyncio.wait_for(handoff(), 120))
    assert holder == "replica-1"
    assert took < LEASE_SECONDS  # handed over, not taken after the Lease expired
    print(f"handoff took {took:.3f} s; notes: {notes}")
