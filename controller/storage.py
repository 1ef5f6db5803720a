"""Storage readiness: the controller starts without its store, says why, and waits for it.

A controller that exited when MinIO was missing at start crash-looped on Kubernetes, and one
that made its bucket only at start stayed unready for good when MinIO came up late or empty.
Here a task owned by the runtime prepares the store (``prepare``: the bucket, made if missing;
on Kubernetes the proof that MinIO confines sandbox credentials), retrying with backoff until it
works, and then keeps checking it: a store that fails its check is reported not ready with the
reason and prepared again.

Until a first preparation has succeeded, ``GatedStore`` refuses every store call with
StorageNotReady, a StoreUnavailable: /readyz (which checks the store) and requests get a 503 with
the reason, and no turn starts a sandbox before MinIO's session policies are proven. After that,
outages surface from the store itself, as they always did.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controller.stores.base import StoreUnavailable, ThreadStore
from controller.tasks import TaskSet, stopping

log = logging.getLogger(__name__)


class StorageNotReady(StoreUnavailable):
    """The store has not been prepared yet; the message says why."""


@dataclass(frozen=True)
class Backoff:
    """Seconds between tries: ``first``, doubled after each failure up to ``most``. The cap
    bounds how long a controller stays unready after storage came back."""

    first: float = 0.5
    most: float = 10.0

    def after(self, delay: float) -> float:
        return min(delay * 2, self.most)


class StorageGate:
    """Prepares the store in the background until it works, then checks it every ``recheck`` s."""

    def __init__(
        self,
        store: ThreadStore,
        prepare: Callable[[], None],
        backoff: Backoff = Backoff(),
        recheck: float = 10.0,
        observe: Callable[[bool], object] = lambda _up: None,
    ) -> None:
        self.store = store
        self._prepare = prepare
        self._observe = observe  # told each try's outcome (the threadbox_storage_up gauge)
        self.backoff = backoff
        self.recheck = recheck  # seconds between checks while ready
        self.prepared = False
        # None: no known problem. Store calls before start() pass (the CLI and tests seed a
        # store before serving), so only a failed try closes the gate.
        self.reason: str | None = None
        self._tasks = TaskSet("storage readiness")

    @property
    def ready(self) -> bool:
        return self.prepared and self.reason is None

    async def start(self) -> None:
        """One try now, so a store that is up is ready before the first request; then the watch."""
        await self._run(self._prepare)
        self._tasks.spawn(self._watch())

    async def close(self) -> None:
        await self._tasks.drain(timeout=0)

    def require(self) -> None:
        """Raise StorageNotReady while the store has failed and was never prepared."""
        if not self.prepared and self.reason is not None:
            raise StorageNotReady(f"storage is not ready yet ({self.reason}); threadbox keeps trying")

    async def _watch(self) -> None:
        delay = self.backoff.first
        while not stopping():
            if self.ready:
                delay = self.backoff.first
                await asyncio.sleep(self.recheck)
                await self._run(self.store.check)
            else:
                await asyncio.sleep(delay)
                delay = self.backoff.after(delay)
                await self._run(self._prepare)

    async def _run(self, step: Callable[[], None]) -> None:
        try:
            await asyncio.to_thread(step)
        except Exception as exc:  # any failure means not ready; the watch must outlive it
            self._observe(False)
            self._failed(str(exc) or type(exc).__name__)
            return
        self._observe(True)
        if not self.ready:
            log.info("storage is ready")
        self.prepared, self.reason = True, None

    def _failed(self, reason: str) -> None:
        if reason != self.reason:  # once per cause, not once per retry
            log.warning("storage is not ready: %s; retrying by itself", reason)
        self.reason = reason


class GatedStore:
    """The store behind a StorageGate. It delegates by name, so it stays a ThreadStore whatever
    methods the protocol grows."""

    def __init__(self, inner: ThreadStore, gate: StorageGate) -> None:
        self.inner = inner
        self.gate = gate

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def gated(*args: Any, **kwargs: Any) -> Any:
            self.gate.require()
            return attr(*args, **kwargs)

        return gated
