"""Kubernetes backend: one pod per thread, a facade over controller/k8s (one module per job).

Everything the controller needs is in the cluster, found by label: the pod (IP, UID,
``last-active`` annotation) and its Secret (the kernel's key), so any controller replica,
or one restarted, finds any thread's sandbox (k8s/lookup.py). A new thread first claims a
warm pod (k8s/claim.py, with ``warm_pool_size``); a miss starts a pod (k8s/pods.py). Files
sync through the in-pod server (k8s/podserver.py). Every API call goes through k8s/api.py,
whose StartFailed this module answers as SandboxStartError.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from kubernetes import client

from controller.backends.base import WARM_SESSION, SandboxInfo, SandboxStartError, TurnLease
from controller.config import Settings, subset
from controller.k8s import lookup, objects, pods, podstate
from controller.k8s.api import Kube, StartFailed, load_api_client, starting
from controller.k8s.claim import claim_bound
from controller.k8s.connection import for_pod, new_connection
from controller.k8s.events import EventRecorder
from controller.k8s.lease import ThreadLeases
from controller.k8s.liveness import Liveness
from controller.k8s.names import object_name
from controller.k8s.podcache import PodCache
from controller.k8s.podserver import PodRef, PodServer, PodServerError
from controller.k8s.policy import Policies, PolicyConfig
from controller.k8s.pool import Claimed, PoolSize, WarmPool
from controller.k8s.sts import PodCredentials
from controller.metrics import Metrics
from controller.quotas import UserQuota, user_usage
from controller.stores.base import ThreadStore
from controller.workspace import PersistResult

log = logging.getLogger(__name__)

STALE_SECRET_SECONDS = 120  # an ownerless Secret this old with no pod is a crash leftover


class KubernetesBackend:
    name = "kubernetes"
    keep_on_shutdown = True  # pods outlive a controller restart; the next one adopts them
    isolated = True

    def __init__(
        self, settings: Settings, api: client.ApiClient | None = None, store: ThreadStore | None = None
    ) -> None:
        self.settings = settings
        self.store = store  # where per-user quotas count a user's threads; None: the pods keep the last count
        self.ns = settings.sandbox_namespace
        self.pod_config = objects.PodConfig.from_settings(settings)
        api = api or load_api_client(settings.kubeconfig)
        self.kube = Kube(api, self.ns)
        self.policies = Policies(self.kube, PolicyConfig.from_settings(settings))
        self.credentials = PodCredentials.from_settings(settings)
        self.server = PodServer(UserQuota(settings.user_max_files, settings.user_max_bytes))
        self.pod_cache = PodCache(self.kube)  # watched between open() and close()
        self.liveness = Liveness(self.kube, self.pod_cache, self.server, min(30.0, settings.idle_timeout / 4))
        self.leases = ThreadLeases(api, self.ns)
        self.events = EventRecorder(self.kube)
        self.pool: WarmPool | None = None  # runs between open() and close()
        self.stale_secret_seconds: float = STALE_SECRET_SECONDS

    @property
    def isolation(self) -> str:
        runtime = self.settings.runtime_class_name or "the cluster's default"
        return (
            f"a pod per thread (runtime class: {runtime}), non-root, no capabilities, "
            "a NetworkPolicy, storage credentials for its own prefix only"
        )

    async def died_of(self, info: SandboxInfo) -> None:
        # The pod's entrypoint relaunches a kernel the OOM killer ended, so the pod's status never
        # says OOMKilled; the generic message (which names memory) is all that is known here.
        return None

    async def open(self, metrics: Metrics) -> None:
        await self.policies.ensure_default_deny()
        self.pod_cache.start()
        if self.settings.warm_pool_size:
            size = subset(
                PoolSize, self.settings, target="warm_pool_size", concurrency="warm_pool_refill_concurrency"
            )
            prepare = self.policies.ensure_allow
            self.pool = WarmPool(self.kube, self.pod_cache, self.pod_config, size, metrics, prepare)
            await self.pool.start()

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        self.pod_cache.stop()
        await self.server.close()

    async def start(self, thread_id: str) -> SandboxInfo:
        if self.pool is not None:
            claimed = await claim_bound(self.pool, self.kube, self.server, self.credentials.mint, thread_id)
            if claimed is not None:
                return self._warm(thread_id, claimed)
        name, connection = object_name(thread_id), new_connection()
        try:
            with starting(f"could not prepare the sandbox pod {name}"):
                await self.policies.ensure_allow()
            storage = await asyncio.to_thread(self.credentials.mint, thread_id)
            secret = objects.sandbox_secret(thread_id, self.ns, connection, storage)
            body = objects.sandbox_pod(thread_id, self.pod_config, time.time())
            pod = await pods.start(self.kube, name, secret, body, self.settings.start_timeout)
        except StartFailed as exc:
            raise SandboxStartError(str(exc)) from exc
        now = time.time()
        self.liveness.touched(podstate.uid(pod), now)  # created with last-active set
        return _sandbox(thread_id, pod, connection, now)

    def _warm(self, thread_id: str, claimed: Claimed) -> SandboxInfo:
        info = _sandbox(thread_id, claimed.pod, claimed.connection, time.time())
        self.liveness.touched(podstate.uid(claimed.pod), info.last_active)  # the claim patch wrote it
        claimed.session.alive = functools.partial(self.alive, info)
        info.extra[WARM_SESSION] = claimed.session
        return info

    async def find(self, thread_id: str) -> SandboxInfo | None:
        found = await lookup.find(self.kube, self.pod_cache, thread_id)
        return _adopted(*found) if found else None

    async def list(self) -> list[SandboxInfo]:
        stuck_after = 2 * self.settings.start_timeout + 60
        found = await lookup.running(self.kube, stuck_after, self.stale_secret_seconds)
        return [_adopted(pod, connection) for pod, connection in found]

    async def alive(self, info: SandboxInfo) -> bool:
        return await self.liveness.alive(_ref(info), info.extra)

    async def touch(self, info: SandboxInfo) -> None:
        info.last_active = time.time()
        await self.liveness.touch(_ref(info), info.last_active)

    def turn_lease(self, thread_id: str) -> TurnLease:
        return self.leases.turn(thread_id)

    async def record(self, info: SandboxInfo, reason: str, message: str, warning: bool = False) -> None:
        await self.events.record(info.name, str(info.extra["uid"]), reason, message, warning)

    async def stop(self, info: SandboxInfo) -> None:
        uid = str(info.extra["uid"])
        await pods.delete(self.kube, info.name, uid)
        await pods.delete_secret(self.kube, info.name, owner_uid=uid)
        self.liveness.forget(uid)

    async def restore(self, info: SandboxInfo, user: str | None) -> int:
        alive = functools.partial(self.alive, info)
        try:
            return await self.server.restore_when_up(_ref(info), self.settings.start_timeout, alive)
        except PodServerError as exc:
            raise SandboxStartError(f"could not restore the thread's files: {exc}") from exc

    async def persist(self, info: SandboxInfo, user: str | None) -> PersistResult:
        # A pod cannot list the user's other threads: it asks for their count (k8s/podserver.py).
        count = (
            functools.partial(user_usage, self.store, user, info.thread_id) if user and self.store else None
        )
        try:
            return await self.server.persist(_ref(info), count)
        except PodServerError:
            if not await self.alive(info):
                # A pod being deleted saves its workspace itself on SIGTERM (the contract); there
                # is nothing left here to reach, and the turn's real error is that it died.
                log.warning("sandbox %s is gone; its files were saved by its own shutdown", info.name)
                return PersistResult()
            raise

    async def write_file(self, info: SandboxInfo, name: str, data: bytes) -> None:
        await self.server.write_file(_ref(info), name, data)


def _ref(info: SandboxInfo) -> PodRef:
    return PodRef(info.name, str(info.extra["uid"]), str(info.extra["pod_ip"]), str(info.connection["key"]))


def _adopted(pod: dict[str, Any], connection: dict[str, Any]) -> SandboxInfo:
    return _sandbox(podstate.thread_of(pod), pod, connection, podstate.last_active(pod))


def _sandbox(
    thread_id: str, pod: dict[str, Any], connection: dict[str, Any], last_active: float
) -> SandboxInfo:
    """The manager's view of a running pod with an IP, dialled with the kernel key it holds."""
    ip = podstate.pod_ip(pod)
    assert ip is not None  # callers pass running pods only
    name, extra = pod["metadata"]["name"], {"uid": podstate.uid(pod), "pod_ip": ip}
    return SandboxInfo(
        thread_id, name, for_pod(connection, ip), podstate.created(pod), last_active, None, extra
    )
