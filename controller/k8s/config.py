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
from controller.profiles import Profile, Profiles, load_profiles
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
    pool: PoolSize  # its target is the default profile's; each profile's pool has its own
    # The current version of every profile, the default first: a warm pool for each that has one.
    profiles: tuple[Profile, ...]
    start_timeout: float
    touch_every: float

    @classmethod
    def from_settings(cls, s: Settings, profiles: Profiles | None = None) -> KubernetesConfig:
        """``profiles``: as loaded already (None: from THREADBOX_PROFILES_FILE; ProfileError)."""
        current = profiles or load_profiles(s)
        default = current.get(current.default)
        return cls(
            namespace=s.sandbox_namespace,
            kubeconfig=s.kubeconfig,
            runtime_class=s.runtime_class_name,
            pods=PodConfig.from_settings(s),
            policy=PolicyConfig.from_settings(s),
            credentials=PodCredentials.from_settings(s),
            quota=UserQuota(s.user_max_files, s.user_max_bytes),
            pool=subset(PoolSize, s, target="warm_pool_size", concurrency="warm_pool_refill_concurrency"),
            profiles=(default, *(p for p in current.current.values() if p != default)),
            start_timeout=s.start_timeout,
            touch_every=min(TOUCH_EVERY_MAX, s.idle_timeout / 4),
        )
