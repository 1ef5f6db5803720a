"""A list-then-watch of labelled objects, run as an asyncio task that ``ListWatch`` owns: the
sandbox pods (podcache.py) and the turn Leases (lease.py), each given its list method.

Its handlers run on the event loop, so the cache they feed needs no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from controller.k8s.api import API_ERRORS, Kube, api_message
from controller.tasks import stopping

log = logging.getLogger(__name__)

WATCH_SECONDS = 30  # the server ends a watch request after this; the next one resumes from its version
RETRY_SECONDS = 1  # after a failed list or watch


@dataclass(frozen=True)
class Handlers:
    listed: Callable[[list[dict[str, Any]]], None]  # a full listing: the cache is exactly this
    changed: Callable[[dict[str, Any]], None]  # added or modified
    removed: Callable[[dict[str, Any]], None]  # deleted, or no longer matching the selector


def pods(kube: Kube) -> Callable[..., Any]:
    return kube.core.list_namespaced_pod


class ListWatch:
    def __init__(
        self,
        kube: Kube,
        selector: str,
        handlers: Handlers,
        lister: Callable[[Kube], Callable[..., Any]] = pods,
    ) -> None:
        self.kube = kube
        self.selector = selector
        self.handlers = handlers
        self.lister = lister
        self._task: asyncio.Task[None] | None = None

    def start(self, name: str) -> None:
        self._task = asyncio.create_task(self._run(), name=name)

    async def close(self) -> None:
        """Cancel the watch and wait until it has ended."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        version: str | None = None
        while not stopping():
            try:
                version = await self._list_and_watch(version)
            except API_ERRORS as exc:
                if not (isinstance(exc, ApiException) and exc.status == 410):
                    log.warning("watch (%s) failed, listing again: %s", self.selector, api_message(exc))
                    await asyncio.sleep(RETRY_SECONDS)
                version = None

    async def _list_and_watch(self, version: str | None) -> str | None:
        """One watch request (after a listing when ``version`` is None); the version to resume
        from, or None to list again."""
        list_fn = self.lister(self.kube)
        if version is None:
            listing = await self.kube.get(list_fn, self.kube.ns, label_selector=self.selector)
            version = str(listing["metadata"]["resourceVersion"])
            self.handlers.listed(listing["items"])
        events = self.kube.watch(
            list_fn,
            WATCH_SECONDS,
            label_selector=self.selector,
            resource_version=version,
            allow_watch_bookmarks=True,
        )
        async with contextlib.aclosing(events):
            async for kind, pod in events:
                if kind == "ERROR":
                    return None  # e.g. our version is too old: list again
                version = str(pod["metadata"]["resourceVersion"])
                if kind in ("ADDED", "MODIFIED"):
                    self.handlers.changed(pod)
                elif kind == "DELETED":
                    self.handlers.removed(pod)
        return version
