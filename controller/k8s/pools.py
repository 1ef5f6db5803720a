"""The warm pools of a controller: one per profile whose current version has a pool size."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import replace

from controller.k8s import objects
from controller.k8s.api import Kube
from controller.k8s.config import KubernetesConfig
from controller.k8s.podcache import PodCache
from controller.k8s.pool import Neighbours, WarmPool
from controller.metrics import Metrics

# What must exist before a pod of this egress allowlist starts (k8s/policy.py's ensure_for).
Prepare = Callable[[tuple[str, ...]], Awaitable[None]]


def warm_pools(
    kube: Kube, cache: PodCache, config: KubernetesConfig, metrics: Metrics, prepare: Prepare
) -> dict[str, WarmPool]:
    """By pod settings' hash (a claim looks its thread's version up). The first pool deletes
    warm pods of every version no pool has: after a profile changes, they roll to the new one."""
    sized = [(config.pods.for_profile(p), p.warm_pool_size) for p in config.profiles if p.warm_pool_size]
    hashes = [objects.profile_hash(cfg) for cfg, _ in sized]
    pools = {}
    for index, (cfg, target) in enumerate(sized):
        neighbours = Neighbours(frozenset(hashes) - {hashes[index]}, sweep=index == 0)
        ready = functools.partial(prepare, cfg.egress)
        size = replace(config.pool, target=target)
        pools[hashes[index]] = WarmPool(kube, cache, cfg, size, metrics, ready, neighbours)
    return pools
