"""The warm pool: sandbox pods started before any thread needs them, claimed in one patch.

Warm pods are anonymous (``tbw-<random>``), labelled ``threadbox.dev/pool=warm`` and with the
hash of the pod settings (``threadbox.dev/profile``); their Secret holds the kernel key only.
The backend's pod cache (k8s/podcache.py, one watch for every sandbox pod) feeds the pool's
view of them: a view of the cluster, never the truth, which stays in the labels, so any number of controllers can share a pool and a restarted one picks it up.

A pod is *ready* here once this controller has a kernel session to it that answered
kernel_info, so a claim hands over a connected kernel. Claiming is one patch that sets the
thread label with the cached ``resourceVersion`` as a precondition: of two controllers racing
for a pod, one wins and the other gets 409, reads the pod again and tries the next one. The backend then binds the
pod to the thread (credentials, files); a claimed pod is from then on found by its labels
exactly like a cold one. Everything else (refill, stale profiles, dead pods) is reconciled in
the background from the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from controller.k8s import objects, pods, podstate
from controller.k8s.api import API_ERRORS, Kube, api_message
from controller.k8s.connection import for_pod, from_secret, new_connection
from controller.k8s.names import POOL_LABEL, POOL_WARM, PROFILE_LABEL, warm_name
from controller.k8s.podcache import PodCache
from controller.k8s.watch import Handlers
from controller.kernel import KernelSession, KernelUnavailable
from controller.metrics import Metrics
from controller.tasks import stopping

log = logging.getLogger(__name__)

RECHECK_SECONDS = 5.0  # reconcile this often even without watch events (stuck pods, lost events)
# A refill waits until claims have paused this long: creating pods (credentials, Secret, Pod)
# beside a burst of claims slows every claim of the burst (bench/results/start_phases.md).
SETTLE_SECONDS = 0.3


@dataclass
class Warm:
    """A warm pod this controller is connected to: kernel up, ready to hand out."""

    session: KernelSession
    connection: dict[str, Any]  # as the pod has it (ip 0.0.0.0)


@dataclass(frozen=True)
class Claimed:
    pod: dict[str, Any]  # as the claim patch returned it
    session: KernelSession
    connection: dict[str, Any]
    launch: int | None = None  # the kernel's launch number, asked while binding (k8s/liveness.py)


@dataclass(frozen=True)
class Plan:
    create: int
    delete: list[str] = field(default_factory=list)
    connect: list[str] = field(default_factory=list)


def _profile(pod: Mapping[str, Any]) -> str:
    return str((pod["metadata"].get("labels") or {}).get(PROFILE_LABEL, ""))


def unclaimed(pod: dict[str, Any], uid: str) -> bool:
    """Still the same warm pod, nobody's yet and not being deleted."""
    labels = pod["metadata"].get("labels") or {}
    return podstate.uid(pod) == uid and labels.get(POOL_LABEL) == POOL_WARM and podstate.alive(pod)


def broken(pod: dict[str, Any], now: float, stuck_after: float) -> bool:
    """Will never serve: ended, failing to start, or not running long after its creation."""
    progress = podstate.start_progress(pod)
    if progress.error is not None:
        return True
    return not progress.running and now - podstate.created(pod) > stuck_after


def plan(
    cache: Mapping[str, dict[str, Any]],
    profile: str,
    target: int,
    ready: Collection[str],
    creating: int,
    busy: Collection[str],
    concurrency: int,
    now: float,
    stuck_after: float,
    others: Collection[str] = (),
    sweep: bool = True,
) -> Plan:
    """What to do about the pool: create, delete (stale, broken, surplus) and connect pods.

    Surplus goes by name order so that replicas trimming the same pool pick the same pods.
    Pods being started (created, or running but not yet ready) are limited to ``concurrency``:
    on a small node, pod starts compete for CPU with the sandboxes in use.
    ``others``: the profiles of the other pools, whose pods are theirs; with ``sweep``, this
    pool deletes the pods of every profile no pool has (a profile's old versions).
    """
    live = {n: p for n, p in cache.items() if not podstate.terminating(p) and _profile(p) not in others}
    stale = sorted(
        n
        for n, p in live.items()
        if (_profile(p) != profile and sweep) or (_profile(p) == profile and broken(p, now, stuck_after))
    )
    good = sorted(n for n, p in live.items() if _profile(p) == profile and n not in stale)
    keep, surplus = good[:target], good[target:]
    starting = creating + sum(1 for n in keep if n not in ready)
    create = max(0, min(target - len(keep) - creating, concurrency - starting))
    idle = [n for n in keep if n not in ready and n not in busy]
    connect = [n for n in idle if podstate.start_progress(live[n]).running]
    return Plan(create, [n for n in stale + surplus if n not in busy], connect)


def pick(cache: Mapping[str, dict[str, Any]], ready: Collection[str], profile: str) -> list[str]:
    """Claim candidates, oldest first: connected, running, of this profile, not being deleted."""
    usable = [
        p
        for n, p in cache.items()
        if n in ready and _profile(p) == profile and podstate.alive(p) and podstate.pod_ip(p)
    ]
    return [p["metadata"]["name"] for p in sorted(usable, key=podstate.created)]


async def take(kube: Kube, name: str, pod: dict[str, Any], thread_id: str) -> dict[str, Any] | None:
    """The claim patch; None if another controller has the pod. A 409 can also mean only that
    the cached copy is behind (the kubelet wrote the pod's Ready condition after we connected):
    then the pod, read again, is claimed at its current version if it is still warm."""
    uid = podstate.uid(pod)
    for _ in range(2):
        patch = objects.claim_patch(thread_id, pod["metadata"]["resourceVersion"], time.time())
        try:
            return await kube.get(kube.core.patch_namespaced_pod, name, kube.ns, patch)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise
        fresh = await kube.read(kube.core.read_namespaced_pod, name)
        if fresh is None or not unclaimed(fresh, uid):
            return None
        pod = fresh
    return None


@dataclass(frozen=True)
class PoolSize:
    target: int  # warm pods to keep
    concurrency: int  # pods started at once while refilling
    start_timeout: float


@dataclass(frozen=True)
class Neighbours:
    """The other warm pools of this controller (one per profile with a pool)."""

    profiles: frozenset[str] = frozenset()  # their pod settings' hashes: their pods are theirs
    sweep: bool = True  # this pool deletes warm pods of a profile no pool has


class WarmPool:
    def __init__(
        self,
        kube: Kube,
        pod_cache: PodCache,
        cfg: objects.PodConfig,
        size: PoolSize,
        metrics: Metrics,
        prepare: Callable[[], Awaitable[None]],
        neighbours: Neighbours = Neighbours(),
    ) -> None:
        self.kube = kube
        self.cfg = cfg
        self.profile = objects.profile_hash(cfg)
        self.neighbours = neighbours
        self.target = size.target
        self.concurrency = size.concurrency
        self.start_timeout = size.start_timeout
        self.stuck_after = 2 * size.start_timeout + 60
        self.metrics = metrics
        self.prepare = prepare  # what must exist before the first pod (the network policy)
        self._cache: dict[str, dict[str, Any]] = {}  # name -> warm pod, fed by the pod cache
        self._ready: dict[str, Warm] = {}
        self._connections: dict[str, dict[str, Any]] = {}  # of pods this controller created
        self._creating: set[str] = set()
        self._busy: set[str] = set()  # connecting or deleting
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._claimed_at = 0.0  # monotonic time of the last claim
        self._stopped = False
        self._pod_cache = pod_cache  # warm pods reach _cache below through its subscription
        self._runner: asyncio.Task[None] | None = None
        self._shown = (0, 0)  # what this pool adds to the ready and starting gauges (every pool's sum)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self.metrics.pool_target.inc(self.target)
        self._pod_cache.subscribe(podstate.warm, Handlers(self._replace, self._upsert, self._remove))
        self._runner = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop refilling; warm pods stay for the next controller (or another replica)."""
        self._stopped = True
        tasks = [t for t in (self._runner, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for warm in self._ready.values():
            warm.session.close()
        self._ready.clear()
        self.metrics.pool_target.dec(self.target)
        self.metrics.pool_size.labels("ready").dec(self._shown[0])
        self.metrics.pool_size.labels("starting").dec(self._shown[1])
        self._shown = (0, 0)

    # -- the cache, fed by the pod cache's subscription -----------------------------------

    def _replace(self, listing: list[dict[str, Any]]) -> None:
        self._cache = {p["metadata"]["name"]: p for p in listing}
        for name in [n for n in self._ready if n not in self._cache]:
            self._ready.pop(name).session.close()
        self._changed.set()

    def _upsert(self, pod: dict[str, Any]) -> None:
        self._cache[pod["metadata"]["name"]] = pod
        self._changed.set()

    def _remove(self, pod: dict[str, Any]) -> None:
        """Deleted, or no longer warm (claimed: the label changed)."""
        name = pod["metadata"]["name"]
        self._cache.pop(name, None)
        self._connections.pop(name, None)
        warm = self._ready.pop(name, None)
        if warm is not None:
            warm.session.close()
        self._changed.set()

    # -- reconciling -----------------------------------------------------------------

    async def _run(self) -> None:
        while not stopping():
            self._changed.clear()
            try:
                await self.prepare()
                self._reconcile()
            except Exception:
                log.exception("warm pool pass failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), RECHECK_SECONDS)
            while (quiet := self._claimed_at + SETTLE_SECONDS - time.monotonic()) > 0:
                await asyncio.sleep(quiet)

    def _reconcile(self) -> None:
        todo = plan(
            self._cache,
            self.profile,
            self.target,
            self._ready,
            len(self._creating),
            self._busy,
            self.concurrency,
            time.time(),
            self.stuck_after,
            self.neighbours.profiles,
            self.neighbours.sweep,
        )
        for name in todo.delete:
            self._spawn(name, self._delete(self._cache[name]))
        for name in todo.connect:
            self._spawn(name, self._connect(self._cache[name]))
        for _ in range(todo.create):
            name = warm_name(secrets.token_hex(4))
            self._creating.add(name)
            self._spawn(None, self._create(name))
        self._update_gauges()

    def _spawn(self, name: str | None, work: Coroutine[Any, Any, None]) -> None:
        if name is not None:
            self._busy.add(name)

        def finished(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            if name is not None:
                self._busy.discard(name)
            self._changed.set()

        # The task runs ``work`` itself: one cancelled before its first step (close() right
        # after a reconcile) still closes the coroutine, which a wrapper would leave un-awaited.
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(finished)

    def _update_gauges(self) -> None:
        ready = sum(1 for n in self._ready if n in self._cache)
        starting = len(self._creating) + sum(
            1
            for n, p in self._cache.items()
            if n not in self._ready and _profile(p) == self.profile and not podstate.terminating(p)
        )
        self.metrics.pool_size.labels("ready").inc(ready - self._shown[0])
        self.metrics.pool_size.labels("starting").inc(starting - self._shown[1])
        self._shown = (ready, starting)

    async def _create(self, name: str) -> None:
        try:
            connection = new_connection()
            secret = objects.warm_secret(name, self.cfg, connection)
            await self.kube.call(self.kube.core.create_namespaced_secret, self.kube.ns, secret)
            self._connections[name] = connection
            pod = await pods.create(self.kube, objects.warm_pod(name, self.cfg, time.time()))
            self._cache.setdefault(name, pod)  # the watch may already have a newer copy
        except asyncio.CancelledError:
            await asyncio.shield(pods.delete_quietly(self.kube, name))
            raise
        except API_ERRORS as exc:
            log.warning("could not create warm pod %s: %s", name, api_message(exc))
            self.metrics.start_failures.labels("pool").inc()
            await pods.delete_quietly(self.kube, name)
            await asyncio.sleep(1)  # no tight loop of failing creates (quota, API down)
        finally:
            self._creating.discard(name)

    async def _delete(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        log.info("deleting warm pod %s", name)
        try:
            await pods.delete(self.kube, name, podstate.uid(pod), wait=False)
        except API_ERRORS as exc:
            log.warning("could not delete warm pod %s: %s", name, api_message(exc))

    async def _connect(self, pod: dict[str, Any]) -> None:
        """Dial the warm pod's kernel and wait for kernel_info, so a claim hands over a live session."""
        name, uid, ip = pod["metadata"]["name"], podstate.uid(pod), podstate.pod_ip(pod)
        assert ip is not None  # plan() connects running pods only
        try:
            connection = self._connections.get(name) or from_secret(
                await self.kube.get(self.kube.core.read_namespaced_secret, name, self.kube.ns)
            )
        except API_ERRORS as exc:
            log.warning("cannot read the Secret of warm pod %s: %s", name, api_message(exc))
            return
        if connection is None:
            await self._delete(pod)  # unusable without its key
            return

        async def alive() -> bool:
            current = self._cache.get(name)
            return current is not None and podstate.uid(current) == uid and podstate.alive(current)

        session = KernelSession(for_pod(connection, ip), alive, self.cfg.max_output_bytes)
        try:
            await session.start(self.start_timeout)
        except KernelUnavailable as exc:
            log.warning("warm pod %s: %s; replacing it", name, exc)
            if await alive():
                await self._delete(pod)
            return
        except BaseException:
            session.close()
            raise
        if await alive() and not self._stopped:
            self._ready[name] = Warm(session, connection)
        else:
            session.close()

    # -- claiming --------------------------------------------------------------------

    @property
    def ready(self) -> int:
        return len(pick(self._cache, self._ready, self.profile))

    async def claim(self, thread_id: str) -> Claimed | None:
        """Take a ready warm pod for the thread; None (a miss, counted) when none could be had."""
        conflict = False
        for name in pick(self._cache, self._ready, self.profile):
            warm, pod = self._ready.pop(name, None), self._cache.get(name)
            if warm is None or pod is None:  # taken by a concurrent claim here, or just deleted
                if warm is not None:
                    warm.session.close()
                continue
            try:
                claimed = await take(self.kube, name, pod, thread_id)
            except API_ERRORS as exc:
                warm.session.close()
                log.warning("could not claim warm pod %s: %s", name, api_message(exc))
                self.count("miss", "api_error")
                return None
            finally:
                self._claimed_at = time.monotonic()
                self._changed.set()  # refill, once claims pause
            if claimed is None:
                warm.session.close()  # reconnected by the next pass if the pod is still warm
                conflict = True
                continue
            self._cache.pop(name, None)
            self._connections.pop(name, None)
            return Claimed(claimed, warm.session, warm.connection)
        self.count("miss", "conflict" if conflict else "empty")
        return None

    def count(self, result: str, reason: str) -> None:
        self.metrics.pool_claims.labels(result, reason).inc()
        self._update_gauges()
