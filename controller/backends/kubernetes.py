"""Kubernetes backend: one pod per thread, a facade over controller/k8s (one module per job).

Everything the controller needs is in the cluster, found by label: the pod (IP, UID,
``last-active`` annotation) and its Secret (the kernel's key), so any controller replica,
or one restarted, finds any thread's sandbox (k8s/lookup.py). A new thread first claims a
warm pod of its profile version (k8s/pools.py, k8s/claim.py); a miss starts a pod
(k8s/pods.py). Files sync through the in-pod server (k8s/podserver.py). Every API call goes
through k8s/api.py, whose StartFailed this module answers as SandboxStartError.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from controller import kernelstate
from controller.backends.base import Dialer, SandboxStartError, Session, TurnLease
from controller.backends.pod_sandbox import PodSandbox, adopted, pod_ref, pod_sandbox
from controller.k8s import lookup, objects, pods, podstate
from controller.k8s.api import Kube, load_api_client, starting
from controller.k8s.claim import claim_of
from controller.k8s.config import KubernetesConfig
from controller.k8s.connection import new_connection
from controller.k8s.errors import StartFailed
from controller.k8s.events import EventRecorder
from controller.k8s.lease import ThreadLeases
from controller.k8s.liveness import Liveness
from controller.k8s.names import object_name
from controller.k8s.podcache import PodCache
from controller.k8s.podserver import PodServer, PodServerError
from controller.k8s.policy import Policies
from controller.k8s.pool import Claimed, WarmPool
from controller.k8s.pools import warm_pools
from controller.kernelstate import Saved
from controller.metrics import Metrics
from controller.profiles import Profile
from controller.quotas import Quotas, user_usage
from controller.stores.base import ThreadStore
from controller.workspace import PersistResult

log = logging.getLogger(__name__)

STALE_SECRET_SECONDS = 120  # an ownerless Secret this old with no pod is a crash leftover


class KubernetesBackend:
    name = "kubernetes"
    isolated = True
    keep_on_release = True

    def __init__(self, config: KubernetesConfig, store: ThreadStore | None = None) -> None:
        self.config = config
        self.store = store  # where per-user quotas count a user's threads; None: the pods keep the last count
        self.ns = config.namespace
        self.kube = Kube(self.ns, functools.partial(load_api_client, config.kubeconfig))  # open() connects
        self.policies = Policies(self.kube, config.policy)
        self.credentials = config.credentials
        self.server = PodServer(config.quota)
        self.pod_cache = PodCache(self.kube)  # watched between open() and close()
        self.liveness = Liveness(self.kube, self.pod_cache, self.server, config.touch_every)
        self.leases = ThreadLeases(self.kube)
        self.events = EventRecorder(self.kube)
        self.pools: dict[str, WarmPool] = {}  # by pod settings' hash; run between open() and close()
        self.stale_secret_seconds: float = STALE_SECRET_SECONDS

    @property
    def isolation(self) -> str:
        runtime = self.config.runtime_class or "the cluster's default"
        return (
            f"a pod per thread (runtime class: {runtime}), non-root, no capabilities, "
            "a NetworkPolicy, storage credentials for its own prefix only"
        )

    async def died_of(self, info: PodSandbox) -> None:
        # The pod's entrypoint relaunches a kernel the OOM killer ended, so the pod's status never
        # says OOMKilled; the generic message (which names memory) is all that is known here.
        return None

    async def open(self, metrics: Metrics) -> None:
        await self.kube.open()
        await self.policies.ensure_default_deny()
        self.pod_cache.start()
        self.leases.start()
        self.pools = warm_pools(self.kube, self.pod_cache, self.config, metrics, self.policies.ensure_for)
        await asyncio.gather(*(pool.start() for pool in self.pools.values()))

    async def close(self) -> None:
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))
        self.pools = {}
        await self.leases.close()  # gives up the Leases kept after their turns
        await self.pod_cache.close()
        await self.server.close()
        await self.kube.close()

    async def start(self, thread_id: str, profile: Profile) -> PodSandbox:
        cfg = self.config.pods.for_profile(profile)
        claimed = await claim_of(self.pools, cfg, self.kube, self.server, self.credentials.mint, thread_id)
        if claimed is not None:
            return self._warm(thread_id, claimed)
        name, connection = object_name(thread_id), new_connection()
        try:
            with starting(f"could not prepare the sandbox pod {name}"):
                await self.policies.ensure_for(cfg.egress)
            storage = await asyncio.to_thread(self.credentials.mint, thread_id)
            secret = objects.sandbox_secret(thread_id, self.ns, connection, storage)
            body = objects.sandbox_pod(thread_id, cfg, time.time())
            pod = await pods.start(self.kube, name, secret, body, self.config.start_timeout)
        except StartFailed as exc:
            raise SandboxStartError(str(exc)) from exc
        now = time.time()
        self.liveness.touched(podstate.uid(pod), now)  # created with last-active set
        return pod_sandbox(thread_id, pod, connection, now, "cold")

    def _warm(self, thread_id: str, claimed: Claimed) -> PodSandbox:
        info = pod_sandbox(thread_id, claimed.pod, claimed.connection, time.time(), "warm")
        self.liveness.touched(info.uid, info.last_active)  # the claim patch wrote it
        self.liveness.launched(info.uid, claimed.launch, info.liveness)
        claimed.session.alive = functools.partial(self.alive, info)
        info.warm = claimed.session
        return info

    async def find(self, thread_id: str) -> PodSandbox | None:
        found = await lookup.find(self.kube, self.pod_cache, thread_id)
        return adopted(*found) if found else None

    async def list(self) -> list[PodSandbox]:
        stuck_after = 2 * self.config.start_timeout + 60
        found = await lookup.running(self.kube, stuck_after, self.stale_secret_seconds)
        return [adopted(pod, connection) for pod, connection in found]

    async def ready(self, info: PodSandbox, user: str | None, dialer: Dialer) -> Session:
        if info.warm is not None:  # connected and restored by the claim
            session, info.warm = info.warm, None
            return session
        restore = functools.partial(self.restore, info, user)
        return await dialer.ready(info, functools.partial(self.alive, info), restore)

    async def alive(self, info: PodSandbox) -> bool:
        return await self.liveness.alive(pod_ref(info), info.liveness)

    async def touch(self, info: PodSandbox) -> None:
        info.last_active = time.time()
        await self.liveness.touch(pod_ref(info), info.last_active)

    def turn_lease(self, thread_id: str) -> TurnLease:
        return self.leases.turn(thread_id)

    async def record(self, info: PodSandbox, reason: str, message: str, warning: bool = False) -> None:
        await self.events.record(info.name, info.uid, reason, message, warning)

    async def release(self, info: PodSandbox) -> None:
        return None  # pods outlive a controller restart (keep_on_release); the next one adopts them

    async def stop(self, info: PodSandbox) -> None:
        await pods.delete(self.kube, info.name, info.uid, cache=self.pod_cache)
        await pods.delete_secret(self.kube, info.name, owner_uid=info.uid)
        self.liveness.forget(info.uid)

    async def restore(self, info: PodSandbox, user: str | None) -> int:
        alive = functools.partial(self.alive, info)
        try:
            return await self.server.restore_when_up(pod_ref(info), self.config.start_timeout, alive)
        except PodServerError as exc:
            raise SandboxStartError(f"could not restore the thread's files: {exc}") from exc

    async def persist(self, info: PodSandbox, user: str | None) -> PersistResult:
        # A pod cannot list the user's other threads: it asks for their count (k8s/podserver.py).
        count = (
            functools.partial(user_usage, self.store, user, info.thread_id) if user and self.store else None
        )
        try:
            return await self.server.persist(pod_ref(info), count)
        except PodServerError:
            if not await self.alive(info):
                # A pod being deleted saves its workspace itself on SIGTERM (the contract); there
                # is nothing left here to reach, and the turn's real error is that it died.
                log.warning("sandbox %s is gone; its files were saved by its own shutdown", info.name)
                return PersistResult()
            raise

    async def save_state(self, info: PodSandbox, cap: int, user: str | None = None) -> Saved:
        # The pod applies the thread's byte quota; the user's, over threads its credentials
        # cannot list, is counted here and sent as a smaller cap.
        if user and self.store is not None and self.config.quota.max_bytes:
            quotas = self.config.quota.applied_to(Quotas())
            cap = await asyncio.to_thread(kernelstate.room, self.store, info.thread_id, quotas, cap, user)
        return await self.server.save_state(pod_ref(info), cap)

    async def load_state(self, info: PodSandbox, cap: int) -> str | None:
        # No pod round trip for a thread that never saved; the pod's env has the cap to save.
        if not await asyncio.to_thread(kernelstate.stored, self.store, info.thread_id):
            return None
        return await self.server.load_state(pod_ref(info), cap)

    async def write_file(self, info: PodSandbox, name: str, data: bytes) -> None:
        await self.server.write_file(pod_ref(info), name, data)
