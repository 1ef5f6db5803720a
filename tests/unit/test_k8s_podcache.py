"""PodCache: one watch's events fanned out to subscribers as if each ran its own narrower watch."""

from __future__ import annotations

import asyncio
from typing import Any

from controller.k8s.names import POOL_LABEL, POOL_WARM, THREAD_LABEL, base_labels
from controller.k8s.podcache import PodCache
from controller.k8s.podstate import warm
from controller.k8s.watch import Handlers
from tests.unit.test_k8s_api import unopened_kube


def pod(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": f"uid-{name}", "labels": {**base_labels(), **labels}}}


class Seen:
    def __init__(self) -> None:
        self.events: list[tuple[str, list[str]]] = []

    def handlers(self) -> Handlers:
        return Handlers(
            lambda pods: self.events.append(("listed", [p["metadata"]["name"] for p in pods])),
            lambda p: self.events.append(("changed", [p["metadata"]["name"]])),
            lambda p: self.events.append(("removed", [p["metadata"]["name"]])),
        )


def cache_and_watch() -> tuple[PodCache, Handlers]:
    cache = PodCache(unopened_kube())  # never started: the test plays the watch
    return cache, cache._watch.handlers


def test_a_subscriber_sees_only_its_pods_and_a_claimed_one_leaves() -> None:
    cache, watch = cache_and_watch()
    seen = Seen()
    cache.subscribe(warm, seen.handlers())
    assert not cache.synced and cache.get("w1") is None
    watch.listed([pod("w1", **{POOL_LABEL: POOL_WARM}), pod("tb-t1", **{THREAD_LABEL: "t1"})])
    watch.changed(pod("tb-t1", **{THREAD_LABEL: "t1"}))  # a bound pod's change: not the pool's
    claimed = pod("w1", **{POOL_LABEL: "claimed", THREAD_LABEL: "t2"})
    watch.changed(claimed)  # claimed: no longer warm, so removed for the pool
    watch.removed(claimed)  # then deleted: the pool already let it go
    assert seen.events == [("listed", ["w1"]), ("removed", ["w1"])]
    assert cache.synced and cache.get("w1") is None
    assert [p["metadata"]["name"] for p in cache.of_thread("t1")] == ["tb-t1"]


def test_a_late_subscriber_is_given_the_pods_so_far() -> None:
    cache, watch = cache_and_watch()
    watch.listed([pod("w1", **{POOL_LABEL: POOL_WARM})])
    seen = Seen()
    cache.subscribe(warm, seen.handlers())
    watch.changed(pod("w2", **{POOL_LABEL: POOL_WARM}))
    assert seen.events == [("listed", ["w1"]), ("changed", ["w2"])]


async def test_a_deletion_waits_for_the_watch_to_see_the_pod_go_and_no_longer() -> None:
    cache, watch = cache_and_watch()
    mine, other = pod("tb-t1", **{THREAD_LABEL: "t1"}), pod("tb-t2", **{THREAD_LABEL: "t2"})
    watch.listed([mine, other])
    waiting = asyncio.ensure_future(cache.gone("tb-t1", "uid-tb-t1", within=60))
    await asyncio.sleep(0)
    watch.changed({**mine, "status": {"phase": "Running"}})  # terminating, still there
    watch.removed(other)  # another pod's removal
    await asyncio.sleep(0)
    assert not waiting.done()
    watch.removed(mine)
    assert await asyncio.wait_for(waiting, 5) is True
    # A newer pod of the same name is not the one being deleted.
    watch.changed({"metadata": {**mine["metadata"], "uid": "uid-newer"}})
    assert await cache.gone("tb-t1", "uid-tb-t1", within=60) is True


async def test_a_deletion_the_watch_never_shows_gives_up_after_its_time() -> None:
    cache, watch = cache_and_watch()
    watch.listed([pod("tb-t1")])
    assert await cache.gone("tb-t1", "uid-tb-t1", within=0.05) is False
