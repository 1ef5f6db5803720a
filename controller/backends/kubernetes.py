"""Kubernetes backend: one pod per thread, built by controller/k8s/objects.py.

Everything the controller needs is in the cluster, found by label: the pod (IP, UID,
``last-active`` annotation) and its Secret (the kernel's key), so any controller replica,
or one restarted, finds any thread's sandbox. The controller dials the kernel at the pod
IP and talks to the in-pod agent (port 8888, bearer = kernel key) for file sync.

With ``warm_pool_size`` a new thread first claims a warm pod (controller/k8s/pool.py) and
binds it to the thread through the agent; only a miss starts a pod (a cold start). A pod's
name says nothing about its thread (a claimed pod keeps its pool name): only labels do.
API plumbing is in controller/k8s/api.py.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
import urllib.parse
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import httpx
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from controller.backends.base import WARM_SESSION, SandboxInfo, SandboxStartError, TurnLease
from controller.config import Settings
from controller.filenames import NameConflict
from controller.k8s import objects, podstate
from controller.k8s.api import API_ERRORS, Kube, api_message, load_api_client
from controller.k8s.connection import agent_url, for_pod, from_secret, new_connection
from controller.k8s.events import EventRecorder
from controller.k8s.lease import ThreadLeases
from controller.k8s.names import NETWORK_POLICY_NAME, all_sandboxes_selector, object_name, thread_selector
from controller.k8s.pool import Claimed, WarmPool
from controller.k8s.storage import credential_seconds, pod_storage, split_endpoint
from controller.metrics import Metrics
from controller.stores.base import StoreUnavailable
from controller.workspace import PersistResult

log = logging.getLogger(__name__)

ALIVE_TTL = 1.0  # the manager probes every 0.25 s while a kernel is silent; one GET a second is plenty
STALE_SECRET_SECONDS = 120  # an ownerless Secret this old with no pod is a crash leftover


class AgentError(StoreUnavailable):
    """The in-pod agent failed a file sync request."""

    def __init__(self, message: str, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail  # the agent's own sentence, without the pod and route


class KubernetesBackend:
    name = "kubernetes"
    keep_on_shutdown = True  # pods outlive a controller restart; the next one adopts them
    isolated = True

    async def died_of(self, info: SandboxInfo) -> None:
        # The pod's entrypoint relaunches a kernel the OOM killer ended, so the pod's status never
        # says OOMKilled; the generic message (which names memory) is all that is known here.
        return None

    @property
    def isolation(self) -> str:
        runtime = self.settings.runtime_class_name or "the cluster's default"
        return (
            f"a pod per thread (runtime class: {runtime}), non-root, no capabilities, "
            "a NetworkPolicy, storage credentials for its own prefix only"
        )

    def __init__(self, settings: Settings, api: client.ApiClient | None = None) -> None:
        self.settings = settings
        self.ns = settings.sandbox_namespace
        self.pod_config = objects.PodConfig.from_settings(settings)
        self.api = api or load_api_client(settings.kubeconfig)
        self.kube = Kube(self.api, self.ns)
        self.core, self.net = self.kube.core, self.kube.net  # for the CLI's cluster checks
        self.pool: WarmPool | None = None  # runs between open() and close()
        self.leases = ThreadLeases(self.api, self.ns)
        self.events = EventRecorder(self.api, self.ns)
        self.touch_every = min(30.0, settings.idle_timeout / 4)
        self.stale_secret_seconds: float = STALE_SECRET_SECONDS
        self._alive: dict[str, tuple[float, bool]] = {}  # pod uid -> (checked at, alive)
        self._touched: dict[str, float] = {}  # pod uid -> when the annotation was last written
        self._policy_ready = False
        self._http: httpx.AsyncClient | None = None

    # -- lifecycle: the warm pool ------------------------------------------------------

    async def open(self, metrics: Metrics) -> None:
        s = self.settings
        await self._ensure_default_deny()
        if not s.warm_pool_size:
            return
        self.pool = WarmPool(
            self.kube,
            self.pod_config,
            s.warm_pool_size,
            s.warm_pool_refill_concurrency,
            s.start_timeout,
            metrics,
            self._ensure_policy,
        )
        await self.pool.start()

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- start -----------------------------------------------------------------------

    async def start(self, thread_id: str) -> SandboxInfo:
        if self.pool is not None:
            info = await self._claim_warm(self.pool, thread_id)
            if info is not None:
                return info
        name = object_name(thread_id)
        try:
            await self._ensure_policy()
            storage = await asyncio.to_thread(self._storage_for, thread_id)
            await self._clear_leftovers(name)
            connection = new_connection()
            secret = objects.sandbox_secret(thread_id, self.ns, connection, storage)
            await self.kube.call(self.kube.core.create_namespaced_secret, self.ns, secret)
        except API_ERRORS as exc:
            raise SandboxStartError(f"could not prepare the sandbox pod {name}: {api_message(exc)}") from exc
        try:
            pod = await self._create_pod(thread_id)
            pod = await asyncio.to_thread(self._wait_running, name, self.settings.start_timeout)
        except BaseException:
            # Nobody else knows this pod yet: remove it now, even when the start was cancelled.
            await asyncio.shield(self.kube.delete_quietly(name))
            raise
        now = time.time()
        self._touched[podstate.uid(pod)] = now  # created with last-active set
        return _sandbox(thread_id, pod, connection, now)

    async def _claim_warm(self, pool: WarmPool, thread_id: str) -> SandboxInfo | None:
        """A warm pod bound to the thread, its kernel session attached; None on a miss (counted)."""
        # Scoped credentials take a MinIO round trip: fetch them while the claim patch is in flight.
        storage = (
            asyncio.ensure_future(asyncio.to_thread(self._storage_for, thread_id)) if pool.ready else None
        )
        claimed = await pool.claim(thread_id)
        if claimed is None or storage is None:
            if storage is not None:
                storage.add_done_callback(lambda f: f.exception())  # nobody awaits it: no warning
            return None
        try:
            return await self._bind(claimed, thread_id, await storage)
        except BaseException as exc:
            claimed.session.close()
            name = claimed.pod["metadata"]["name"]
            # It carries the thread's label now: remove it so nothing finds it, then start cold.
            await asyncio.shield(self.kube.delete_pod(name, podstate.uid(claimed.pod), wait=False))
            if not isinstance(exc, (SandboxStartError, AgentError, *API_ERRORS)):
                raise
            log.warning("could not bind warm pod %s to thread %s: %s", name, thread_id, exc)
            pool.count("miss", "bind_failed")
            return None

    async def _bind(self, claimed: Claimed, thread_id: str, storage: dict[str, Any]) -> SandboxInfo:
        """Credentials and files into the running pod (no restart), recorded in its Secret too."""
        pod = claimed.pod
        name, uid, now = pod["metadata"]["name"], podstate.uid(pod), time.time()
        info = _sandbox(thread_id, pod, claimed.connection, now)
        body = {"thread_id": thread_id, "storage": storage}
        secret_patch = objects.bind_secret_patch(thread_id, storage)
        await asyncio.gather(
            self._agent(info, "POST", "/bind", json=body),
            self.kube.call(self.kube.core.patch_namespaced_secret, name, self.ns, secret_patch),
        )
        self._touched[uid] = now  # the claim patch wrote last-active
        claimed.session.alive = functools.partial(self.alive, info)
        info.extra[WARM_SESSION] = claimed.session
        assert self.pool is not None
        self.pool.count("hit", "claimed")
        return info

    def _storage_for(self, thread_id: str) -> dict[str, Any]:
        s = self.settings
        assert s.minio_endpoint and s.minio_access_key and s.minio_secret_key  # config requires store=minio
        from controller.k8s.sts import scoped_credentials  # loads the MinIO SDK only when used

        try:
            creds: dict[str, Any] = scoped_credentials(
                s.minio_endpoint,
                s.minio_access_key,
                s.minio_secret_key.get_secret_value(),
                s.minio_bucket,
                thread_id,
                duration=credential_seconds(s.active_deadline_seconds),
                secure=s.minio_secure,
            )
        except Exception as exc:
            raise SandboxStartError(f"could not get scoped storage credentials from MinIO: {exc}") from exc
        return pod_storage(creds, s.sandbox_minio_endpoint or s.minio_endpoint)

    async def _create_pod(self, thread_id: str) -> dict[str, Any]:
        body = objects.sandbox_pod(thread_id, self.pod_config, time.time())
        try:
            return await self.kube.create_pod(body)
        except API_ERRORS as exc:
            name = object_name(thread_id)
            raise SandboxStartError(f"could not create the sandbox pod {name}: {api_message(exc)}") from exc

    def _wait_running(self, name: str, timeout: float) -> dict[str, Any]:
        """Watch the pod until it runs with an IP; fail at once on reasons that will not clear."""
        deadline = time.monotonic() + timeout
        waiting_on = "the pod to be scheduled"
        w = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                for event in w.stream(  # type: ignore[no-untyped-call]
                    self.kube.core.list_namespaced_pod,
                    self.ns,
                    field_selector=f"metadata.name={name}",
                    timeout_seconds=max(1, int(remaining)),
                    _request_timeout=remaining + 10,
                ):
                    if event["type"] == "DELETED":
                        raise SandboxStartError(f"the sandbox pod {name} was deleted while starting")
                    if event["type"] not in ("ADDED", "MODIFIED"):
                        break  # ERROR (e.g. resource version too old): watch again
                    progress = podstate.start_progress(event["raw_object"])
                    if progress.error:
                        raise SandboxStartError(f"sandbox pod {name}: {progress.error}")
                    if progress.running:
                        return dict(event["raw_object"])
                    waiting_on = progress.waiting_on
        except API_ERRORS as exc:
            raise SandboxStartError(f"lost track of the sandbox pod {name}: {api_message(exc)}") from exc
        finally:
            w.stop()  # type: ignore[no-untyped-call]
        raise SandboxStartError(
            f"the sandbox pod {name} was not running after {timeout:g}s (waiting on {waiting_on})"
        )

    async def _clear_leftovers(self, name: str) -> None:
        """A dead or terminating pod (and its Secret) of this thread must go before the new one."""
        pod = await self.kube.read_pod(name)
        if pod is not None:
            await self.kube.delete_pod(name, podstate.uid(pod))
        await self.kube.delete_secret(name, owner_uid=None)

    async def _ensure_default_deny(self) -> None:
        try:
            await self.kube.call(
                self.kube.net.create_namespaced_network_policy, self.ns, objects.default_deny_policy(self.ns)
            )
        except ApiException as exc:
            if exc.status != 409:  # exists (from the chart or another replica): it never changes
                raise

    async def _ensure_policy(self) -> None:
        if self._policy_ready:
            return
        s = self.settings
        storage_endpoint = s.sandbox_minio_endpoint or s.minio_endpoint
        assert storage_endpoint
        host, port = split_endpoint(storage_endpoint, s.minio_secure)
        peer = s.sandbox_minio_peer or objects.ip_peer(await self._resolve(host))
        policy = objects.sandbox_network_policy(
            self.ns, s.controller_cidrs, (peer, port), s.egress_allow_cidrs
        )
        try:
            await self.kube.call(self.kube.net.create_namespaced_network_policy, self.ns, policy)
        except ApiException as exc:
            if exc.status != 409:
                raise
            # Exists: make it match this controller's settings (the last replica to start wins).
            await self.kube.call(
                self.kube.net.replace_namespaced_network_policy, NETWORK_POLICY_NAME, self.ns, policy
            )
        self._policy_ready = True

    @staticmethod
    async def _resolve(host: str) -> str:
        # A Service name resolves to its ClusterIP, which policies never match (they see the
        # pod IP after the Service rewrote it): in-cluster MinIO needs sandbox_minio_peer.
        try:
            return await asyncio.to_thread(socket.gethostbyname, host)
        except OSError as exc:
            raise SandboxStartError(
                f"cannot resolve the MinIO host {host!r} for the network policy: {exc}"
            ) from exc

    # -- finding ---------------------------------------------------------------------

    def _info(self, pod: dict[str, Any], secret: dict[str, Any]) -> SandboxInfo | None:
        connection = from_secret(secret)
        if podstate.pod_ip(pod) is None or connection is None or not podstate.thread_of(pod):
            return None  # unusable, or an unclaimed warm pod (no thread's sandbox)
        return _sandbox(podstate.thread_of(pod), pod, connection, podstate.last_active(pod))

    async def find(self, thread_id: str) -> SandboxInfo | None:
        # resourceVersion=0: served by the API server's cache at once. A consistent list waits
        # up to ~100 ms after any recent write (the turn's own Lease) for that cache to catch up,
        # and a thread's pod was created at least a turn ago, long before the cache's lag.
        pods = await self.kube.get(
            self.kube.core.list_namespaced_pod,
            self.ns,
            label_selector=thread_selector(thread_id),
            resource_version="0",
        )
        for pod in pods.get("items", []):
            if not podstate.alive(pod):
                continue
            try:
                secret = await self.kube.get(
                    self.kube.core.read_namespaced_secret, pod["metadata"]["name"], self.ns
                )
            except ApiException as exc:
                if exc.status == 404:
                    continue  # unusable without its key; start() replaces it
                raise
            return self._info(pod, secret)
        return None

    async def list(self) -> list[SandboxInfo]:
        selector = all_sandboxes_selector()
        pods = (await self.kube.get(self.kube.core.list_namespaced_pod, self.ns, label_selector=selector))[
            "items"
        ]
        secrets = (
            await self.kube.get(self.kube.core.list_namespaced_secret, self.ns, label_selector=selector)
        )["items"]
        by_name = {s["metadata"]["name"]: s for s in secrets}
        await self._sweep(pods, secrets)
        found = []
        for pod in pods:
            secret = by_name.get(pod["metadata"]["name"])
            info = self._info(pod, secret) if secret and podstate.alive(pod) else None
            if info is not None:
                found.append(info)
        return found

    async def _sweep(self, pods: Sequence[dict[str, Any]], secrets: Sequence[dict[str, Any]]) -> None:
        """Delete what no controller can use: ended pods, stuck ones, Secrets left by a crash mid-start."""
        now = time.time()
        stuck_after = 2 * self.settings.start_timeout + 60
        for pod in pods:
            phase = (pod.get("status") or {}).get("phase")
            ended = phase in ("Succeeded", "Failed")
            stuck = not podstate.alive(pod) and now - podstate.created(pod) > stuck_after
            if (ended or stuck) and not podstate.terminating(pod):
                log.warning("deleting sandbox pod %s (phase %s)", pod["metadata"]["name"], phase)
                await self.kube.delete_pod(pod["metadata"]["name"], podstate.uid(pod), wait=False)
        pod_names = {p["metadata"]["name"] for p in pods}
        for secret in secrets:
            meta = secret["metadata"]
            old = now - podstate.parse_time(meta["creationTimestamp"]) > self.stale_secret_seconds
            if meta["name"] not in pod_names and not meta.get("ownerReferences") and old:
                await self.kube.delete_secret(meta["name"], owner_uid=None)

    # -- liveness and activity -------------------------------------------------------

    async def alive(self, info: SandboxInfo) -> bool:
        """The pod runs and so does the kernel process this session connected to.

        The entrypoint relaunches a kernel that exits (user code calling os._exit, the OOM
        killer), so a running pod does not prove the session's kernel lives: the agent's
        launch counter does. Without it a dead kernel would look alive until the turn timed out.
        """
        uid = str(info.extra["uid"])
        checked = self._alive.get(uid)
        if checked and time.monotonic() - checked[0] < ALIVE_TTL:
            return checked[1]
        try:
            pod, kernel = await asyncio.gather(self.kube.read_pod(info.name), self._kernel_launch(info))
        except API_ERRORS as exc:
            # The API being down says nothing about the kernel: keep the last answer.
            log.warning("cannot read sandbox pod %s: %s", info.name, api_message(exc))
            return checked[1] if checked else True
        result = pod is not None and podstate.uid(pod) == uid and podstate.alive(pod)
        if result and kernel is not None:
            # The first launch seen is the session's kernel (a cold start's, or an adopted pod's).
            result = kernel > 0 and kernel == info.extra.setdefault("kernel_launch", kernel)
        self._alive[uid] = (time.monotonic(), result)
        return result

    async def _kernel_launch(self, info: SandboxInfo) -> int | None:
        """The agent's launch number of the running kernel: 0 if none runs, None if it cannot be asked."""
        try:
            resp = await self._client().get(agent_url(str(info.extra["pod_ip"])) + "/healthz", timeout=2)
            body = resp.json()
        except (httpx.HTTPError, ValueError):
            return None  # agent not up yet (or unreachable): the pod's state decides
        if not isinstance(body, dict):
            return None
        return int(body.get("launches", 0)) if body.get("kernel") == "running" else 0

    async def touch(self, info: SandboxInfo) -> None:
        now = time.time()
        info.last_active = now
        uid = str(info.extra["uid"])
        if now - self._touched.get(uid, 0.0) < self.touch_every:
            return  # throttled: the annotation only has to be close enough for idle reaping
        self._touched[uid] = now
        try:
            await self.kube.call(
                self.kube.core.patch_namespaced_pod, info.name, self.ns, objects.last_active_patch(now)
            )
        except API_ERRORS as exc:
            log.warning("could not record activity on pod %s: %s", info.name, api_message(exc))

    def turn_lease(self, thread_id: str) -> TurnLease:
        return self.leases.turn(thread_id)

    async def record(self, info: SandboxInfo, reason: str, message: str, warning: bool = False) -> None:
        await self.events.record(info.name, str(info.extra["uid"]), reason, message, warning)

    # -- stop ------------------------------------------------------------------------

    async def stop(self, info: SandboxInfo) -> None:
        uid = str(info.extra["uid"])
        await self.kube.delete_pod(info.name, uid)
        await self.kube.delete_secret(info.name, owner_uid=uid)
        self._alive.pop(uid, None)
        self._touched.pop(uid, None)

    # -- files, through the in-pod agent ------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            # Persisting a large workspace to MinIO can take a while; connecting must not.
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(300, connect=5))
        return self._http

    async def _agent(
        self, info: SandboxInfo, method: str, path: str, content: bytes | None = None, json: Any = None
    ) -> Any:
        url = agent_url(str(info.extra["pod_ip"])) + path
        headers = {"Authorization": f"Bearer {info.connection['key']}"}
        try:
            resp = await self._client().request(method, url, headers=headers, content=content, json=json)
        except httpx.HTTPError as exc:
            raise AgentError(f"the sandbox agent of {info.name} did not answer: {exc!r}") from exc
        if resp.status_code >= 400:
            raise AgentError(
                f"the sandbox agent of {info.name} failed {path}: {resp.status_code} {resp.text[:500]}",
                resp.status_code,
                _agent_sentence(resp),
            )
        return resp.json() if resp.content else None

    async def restore(self, info: SandboxInfo, user: str | None) -> int:
        # The agent starts with the kernel; until it listens, connecting is refused: retry.
        deadline = time.monotonic() + self.settings.start_timeout
        while True:
            try:
                result = await self._agent(info, "POST", "/restore")
                return int(result["restored"])
            except AgentError as exc:
                if time.monotonic() > deadline or not await self.alive(info):
                    raise SandboxStartError(f"could not restore the thread's files: {exc}") from exc
                await asyncio.sleep(0.2)

    async def persist(self, info: SandboxInfo, user: str | None) -> PersistResult:
        # Per-user quotas need every thread's usage, which a pod's scoped credentials cannot see;
        # the pod enforces the per-file and per-thread ones.
        try:
            r = await self._agent(info, "POST", "/persist")
        except AgentError:
            if not await self.alive(info):
                # A pod being deleted saves its workspace itself on SIGTERM (the contract); there
                # is nothing left here to reach, and the turn's real error is that it died.
                log.warning("sandbox %s is gone; its files were saved by its own shutdown", info.name)
                return PersistResult()
            raise
        return PersistResult(
            changed=list(r.get("changed", [])),
            deleted=list(r.get("deleted", [])),
            refused=dict(r.get("refused", {})),
            bytes=int(r.get("bytes", 0)),
        )

    async def write_file(self, info: SandboxInfo, name: str, data: bytes) -> None:
        try:
            await self._agent(info, "PUT", "/files/" + urllib.parse.quote(name, safe="/"), data)
        except AgentError as exc:
            if exc.status == HTTPStatus.CONFLICT:  # a link, folder or file in the way; said in its words
                raise NameConflict(exc.detail) from exc
            raise


def _agent_sentence(resp: httpx.Response) -> str:
    try:
        return str(resp.json()["error"])
    except (ValueError, KeyError, TypeError):
        return resp.text[:500]


def _sandbox(
    thread_id: str, pod: dict[str, Any], connection: dict[str, Any], last_active: float
) -> SandboxInfo:
    """The manager's view of a running pod with an IP, dialled with the kernel key it holds."""
    ip = podstate.pod_ip(pod)
    assert ip is not None  # callers pass running pods only
    return SandboxInfo(
        thread_id,
        pod["metadata"]["name"],
        for_pod(connection, ip),
        podstate.created(pod),
        last_active,
        None,
        {"uid": podstate.uid(pod), "pod_ip": ip},
    )
