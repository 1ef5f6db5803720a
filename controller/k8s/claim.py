"""A warm pod for a new thread: claimed from the pool, then bound to the thread in place."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from controller.k8s import objects, pods, podstate
from controller.k8s.api import API_ERRORS, Kube
from controller.k8s.errors import StartFailed
from controller.k8s.objects import PodConfig
from controller.k8s.podserver import PodRef, PodServer, PodServerError
from controller.k8s.pool import Claimed, WarmPool

log = logging.getLogger(__name__)

Mint = Callable[[str], dict[str, Any]]  # thread id -> the pod's storage.json (blocking)


def _pod_ref(pod: dict[str, Any], connection: dict[str, Any]) -> PodRef:
    ip = podstate.pod_ip(pod)
    assert ip is not None  # callers pass running pods only
    return PodRef(pod["metadata"]["name"], podstate.uid(pod), ip, str(connection["key"]))


async def claim_of(
    pools: Mapping[str, WarmPool], cfg: PodConfig, kube: Kube, server: PodServer, mint: Mint, thread_id: str
) -> Claimed | None:
    """A warm pod of exactly these pod settings (the thread's profile version: one pinned to
    an older version starts cold), bound; None without a pool of them, or on a miss."""
    pool = pools.get(objects.profile_hash(cfg))
    return None if pool is None else await claim_bound(pool, kube, server, mint, thread_id)


async def claim_bound(
    pool: WarmPool, kube: Kube, server: PodServer, mint: Mint, thread_id: str
) -> Claimed | None:
    """A warm pod of the thread's now, with its credentials and files; None on a miss (counted)."""
    started = time.monotonic()
    claimed = await _claim_and_bind(pool, kube, server, mint, thread_id)
    result = "miss" if claimed is None else "hit"
    pool.metrics.pool_claim_seconds.labels(result).observe(time.monotonic() - started)
    return claimed


async def _claim_and_bind(
    pool: WarmPool, kube: Kube, server: PodServer, mint: Mint, thread_id: str
) -> Claimed | None:
    # Scoped credentials take a MinIO round trip: mint them while the claim patch is in flight.
    storage = asyncio.ensure_future(asyncio.to_thread(mint, thread_id)) if pool.ready else None
    claimed = await pool.claim(thread_id)
    if claimed is None or storage is None:
        if storage is not None:
            storage.add_done_callback(lambda f: f.exception())  # nobody awaits it: no warning
        return None
    try:
        launch = await _bind(kube, server, claimed, thread_id, await storage)
    except BaseException as exc:
        claimed.session.close()
        name = claimed.pod["metadata"]["name"]
        # It carries the thread's label now: remove it so nothing finds it, then start cold.
        await asyncio.shield(pods.delete(kube, name, podstate.uid(claimed.pod), wait=False))
        if not isinstance(exc, (StartFailed, PodServerError, *API_ERRORS)):
            raise
        log.warning("could not bind warm pod %s to thread %s: %s", name, thread_id, exc)
        pool.count("miss", "bind_failed")
        return None
    pool.count("hit", "claimed")
    return dataclasses.replace(claimed, launch=launch)


async def _bind(
    kube: Kube, server: PodServer, claimed: Claimed, thread_id: str, storage: dict[str, Any]
) -> int | None:
    """Credentials and files into the running pod (no restart), recorded in its Secret too;
    the kernel's launch number, which the first liveness check would otherwise ask for after."""
    ref = _pod_ref(claimed.pod, claimed.connection)
    secret_patch = objects.bind_secret_patch(thread_id, storage)
    _, _, launch = await asyncio.gather(
        server.bind(ref, thread_id, storage),
        kube.call(kube.core.patch_namespaced_secret, ref.name, kube.ns, secret_patch),
        server.kernel_launch(ref.ip),
    )
    return launch
