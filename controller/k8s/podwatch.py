"""A list-then-watch of labelled pods in a worker thread, each change handed to the event loop.

The official client is blocking, so the watch runs in a daemon thread; what it sees is posted
to the loop with ``call_soon_threadsafe``, so the cache it feeds is only ever touched there.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from controller.k8s.api import API_ERRORS, Kube, api_message

log = logging.getLogger(__name__)

WATCH_SECONDS = 30  # a watch request ends after this; a stopped watch's thread is gone within it


@dataclass(frozen=True)
class Handlers:
    listed: Callable[[list[dict[str, Any]]], None]  # a full listing: the cache is exactly this
    changed: Callable[[dict[str, Any]], None]  # added or modified
    removed: Callable[[dict[str, Any]], None]  # deleted, or no longer matching the selector


class PodWatch:
    def __init__(self, kube: Kube, selector: str, handlers: Handlers) -> None:
        self.kube = kube
        self.selector = selector
        self.handlers = handlers
        self._stopped = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, name: str) -> None:
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        core = self.kube.core
        version: str | None = None
        while not self._stopped.is_set():
            try:
                if version is None:
                    listing = self.kube.get_blocking(
                        core.list_namespaced_pod, self.kube.ns, label_selector=self.selector
                    )
                    version = str(listing["metadata"]["resourceVersion"])
                    self._post(self.handlers.listed, listing["items"])
                for kind, pod in self.kube.watch(
                    core.list_namespaced_pod,
                    WATCH_SECONDS,
                    label_selector=self.selector,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                ):
                    if self._stopped.is_set():
                        return
                    if kind == "ERROR":
                        version = None  # e.g. our version is too old: list again
                        break
                    version = str(pod["metadata"]["resourceVersion"])
                    if kind in ("ADDED", "MODIFIED"):
                        self._post(self.handlers.changed, pod)
                    elif kind == "DELETED":
                        self._post(self.handlers.removed, pod)
            except RuntimeError:
                return  # the event loop is closed: nobody is listening any more
            except API_ERRORS as exc:
                if not (isinstance(exc, ApiException) and exc.status == 410):
                    log.warning("pod watch (%s) failed, listing again: %s", self.selector, api_message(exc))
                    self._stopped.wait(1)
                version = None

    def _post(self, fn: Callable[[Any], None], arg: Any) -> None:
        assert self._loop is not None  # set by start(), before this thread runs
        self._loop.call_soon_threadsafe(fn, arg)
