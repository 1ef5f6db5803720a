"""The storage gate (controller/storage.py): a store that is down at start closes the gate with
the reason, the background watch prepares it when it comes, and shutdown stops the watch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.storage import Backoff, GatedStore, StorageGate, StorageNotReady
from controller.stores.base import StoreUnavailable
from controller.stores.local import LocalStore
from tests.support.poll import until

pytestmark = pytest.mark.timeout(30)
QUICK = Backoff(first=0.01, most=0.05)


class Switchable(LocalStore):
    """The real local store behind a switch: while ``down`` it fails as an unreachable MinIO
    would, with ``failure`` as the exception."""

    down = True
    failure: Exception = StoreUnavailable("MinIO at minio:9000 is unavailable: connection refused")
    prepared = 0
    tries = 0

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.outcomes: list[bool] = []  # each try's, as the gate reports them

    def prepare(self) -> None:
        self.check()
        self.prepared += 1

    def check(self) -> None:
        self.tries += 1
        if self.down:
            raise self.failure
        super().check()


@pytest.fixture
def store(tmp_path: Path) -> Switchable:
    return Switchable(tmp_path / "store")


@pytest.fixture
async def gate(store: Switchable) -> AsyncIterator[StorageGate]:
    gate = StorageGate(store, store.prepare, QUICK, recheck=0.01, observe=store.outcomes.append)
    yield gate
    await gate.close()


async def test_a_store_down_at_start_is_refused_with_the_reason_until_it_comes(
    store: Switchable, gate: StorageGate
) -> None:
    gated = GatedStore(store, gate)
    await gate.start()
    assert not gate.ready and gate.reason == "MinIO at minio:9000 is unavailable: connection refused"
    with pytest.raises(StorageNotReady) as refused:
        gated.list_threads()
    assert isinstance(refused.value, StoreUnavailable)  # the API's 503, not a 500
    assert str(refused.value) == (
        "storage is not ready yet (MinIO at minio:9000 is unavailable: connection refused); "
        "threadbox keeps trying"
    )
    store.down = False
    await until(lambda: gate.ready, timeout=5)
    assert gate.reason is None and gated.list_threads() == []
    assert store.outcomes[0] is False and store.outcomes[-1] is True


async def test_calls_pass_before_start_and_an_outage_after_preparation_is_the_stores_own(
    store: Switchable, gate: StorageGate
) -> None:
    gated = GatedStore(store, gate)
    store.down = False
    gated.put_state("tokens/a", {"user": "u"})  # seeding a store before serving
    await gate.start()
    assert gate.ready and store.prepared == 1
    store.down = True
    await until(lambda: not gate.ready, timeout=5)
    with pytest.raises(StoreUnavailable) as failed:
        gated.check()
    assert not isinstance(failed.value, StorageNotReady)  # prepared once: no gate, the real error
    assert gated.get_state("tokens/a") == {"user": "u"}
    store.down = False
    await until(lambda: gate.ready and store.prepared == 2, timeout=5)  # prepared again: a new bucket


async def test_an_unexpected_failure_is_a_reason_and_the_watch_survives_it(
    store: Switchable, gate: StorageGate
) -> None:
    store.failure = RuntimeError()
    await gate.start()
    assert gate.reason == "RuntimeError"
    await until(lambda: store.tries >= 3, timeout=5)  # retried after it, again and again
    assert gate.reason == "RuntimeError"
    store.down = False
    await until(lambda: gate.ready, timeout=5)


async def test_close_stops_the_watch(store: Switchable, gate: StorageGate) -> None:
    await gate.start()
    assert len(gate._tasks) == 1
    await gate.close()
    assert len(gate._tasks) == 0


def test_backoff_doubles_up_to_its_cap() -> None:
    delays = [0.5]
    for _ in range(6):
        delays.append(Backoff().after(delays[-1]))
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
