"""Every sandbox pod of the namespace, warm or bound, from one list-then-watch: an informer.

One watch per replica, however many sandboxes it serves: the warm pool reacts to it,
liveness and find() read it instead of asking the API server every second. A miss is not
trusted (a pod created a moment ago may not have arrived yet): readers fall back to the API.

A subscriber (the pool) gives a predicate and sees listings, changes and removals as if its
own narrower watch ran: a pod that stops matching (a claimed warm pod) is removed for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller.k8s import podstate
from controller.k8s.api import Kube
from controller.k8s.names import all_sandboxes_selector
from controller.k8s.watch import Handlers, ListWatch

Pod = dict[str, Any]


@dataclass
class _Subscriber:
    matches: Callable[[Pod], bool]
    handlers: Handlers
    seen: set[str] = field(default_factory=set)  # names of the pods it has been given


def _name(pod: Pod) -> str:
    return str(pod["metadata"]["name"])


class PodCache:
    def __init__(self, kube: Kube) -> None:
        self._pods: dict[str, Pod] = {}
        self._subscribers: list[_Subscriber] = []
        self._watch = ListWatch(
            kube, all_sandboxes_selector(), Handlers(self._listed, self._changed, self._removed)
        )
        self.synced = False  # a first listing has arrived; until then every read misses
        self._moved = asyncio.Event()  # set, and replaced, on every change the watch brings

    def subscribe(self, matches: Callable[[Pod], bool], handlers: Handlers) -> None:
        """From now on; a subscriber that comes after the first listing is given the pods so far."""
        sub = _Subscriber(matches, handlers)
        self._subscribers.append(sub)
        if self.synced:
            self._list_to(sub, list(self._pods.values()))

    def start(self) -> None:
        self._watch.start("sandbox-pod-cache")

    async def close(self) -> None:
        await self._watch.close()
        self.synced = False

    def get(self, name: str) -> Pod | None:
        return self._pods.get(name)

    def of_thread(self, thread_id: str) -> list[Pod]:
        return [p for p in self._pods.values() if podstate.thread_of(p) == thread_id]

    async def gone(self, name: str, uid: str, within: float) -> bool:
        """Wait until the cache no longer holds the pod of this name and UID; False if it still
        does after ``within`` seconds. Its word alone is a guess: a watch can lag or break."""
        deadline = time.monotonic() + within
        while (pod := self._pods.get(name)) is not None and podstate.uid(pod) == uid:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), remaining)
        return True

    def _moved_now(self) -> None:
        self._moved.set()
        self._moved = asyncio.Event()

    def _listed(self, listing: list[Pod]) -> None:
        self._pods = {_name(p): p for p in listing}
        self.synced = True
        self._moved_now()
        for sub in self._subscribers:
            self._list_to(sub, listing)

    @staticmethod
    def _list_to(sub: _Subscriber, listing: list[Pod]) -> None:
        mine = [p for p in listing if sub.matches(p)]
        sub.seen = {_name(p) for p in mine}
        sub.handlers.listed(mine)

    def _changed(self, pod: Pod) -> None:
        self._pods[_name(pod)] = pod
        self._moved_now()
        for sub in self._subscribers:
            if sub.matches(pod):
                sub.seen.add(_name(pod))
                sub.handlers.changed(pod)
            elif _name(pod) in sub.seen:
                sub.seen.discard(_name(pod))
                sub.handlers.removed(pod)

    def _removed(self, pod: Pod) -> None:
        self._pods.pop(_name(pod), None)
        self._moved_now()
        for sub in self._subscribers:
            if _name(pod) in sub.seen:
                sub.seen.discard(_name(pod))
                sub.handlers.removed(pod)
