"""What the Kubernetes backend needs from Settings, as one frozen config of its parts' own configs.

The backend never holds the whole Settings: the pod builder, the NetworkPolicies, the storage
credentials it mints for pods, the per-user quota and the warm pool each get theirs here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from controller.config import Settings, subset
from controller.k8s.objects import PodConfig
from controller.k8s.policy import PolicyConfig
from controller.k8s.pool import PoolSize
from controller.k8s.sts import PodCredentials
from controller.quotas import UserQuota

TOUCH_EVERY_MAX = 30.0  # seconds between last-active writes, at most: idle reaping needs no more


@dataclass(frozen=True)
class KubernetesConfig:
    namespace: str
    kubeconfig: Path | None
    runtime_class: str | None
    pods: PodConfig
    policy: PolicyConfig
    credentials: PodCredentials
    quota: UserQuota
    pool: PoolSize  # target 0: no warm pool
    start_timeout: float
    touch_every: float

    @classmethod
    def from_settings(cls, s: Settings) -> KubernetesConfig:
        return cls(
            namespace=s.sandbox_namespace,
            kubeconfig=s.kubeconfig,
            runtime_class=s.runtime_class_name,
            pods=PodConfig.from_settings(s),
            policy=PolicyConfig.from_settings(s),
            credentials=PodCredentials.from_settings(s),
            quota=UserQuota(s.user_max_files, s.user_max_bytes),
            pool=subset(PoolSize, s, target="warm_pool_size", concurrency="warm_pool_refill_concurrency"),
            start_timeout=s.start_timeout,
            touch_every=min(TOUCH_EVERY_MAX, s.idle_timeout / 4),
        )
