"""Whether a sandbox pod and its kernel live, and its ``last-active`` annotation, both rate-limited."""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from typing import Any

from controller.k8s import objects, pods, podstate
from controller.k8s.api import API_ERRORS, Kube, api_message
from controller.k8s.podcache import PodCache
from controller.k8s.podserver import PodRef, PodServer

log = logging.getLogger(__name__)

# The manager probes every 0.25 s while a kernel is silent. The pod's state comes from the pod
# cache at no cost, so a deleted pod is seen at once; the in-pod server is asked once a second.
ALIVE_TTL = 1.0
KERNEL_LAUNCH = "kernel_launch"  # the memo key of the first kernel launch a session saw


class Liveness:
    def __init__(self, kube: Kube, pod_cache: PodCache, server: PodServer, touch_every: float) -> None:
        self.kube = kube
        self.pod_cache = pod_cache
        self.server = server
        self.touch_every = touch_every
        self._last: dict[str, bool] = {}  # pod uid -> the last answer, kept while the API is down
        self._launches: dict[str, tuple[float, int | None]] = {}  # pod uid -> (asked at, launch count)
        self._touched: dict[str, float] = {}  # pod uid -> when the annotation was last written

    async def alive(self, pod: PodRef, memo: MutableMapping[str, Any]) -> bool:
        """The pod runs and so does the kernel process the session (whose ``memo`` this is) dialled.

        The entrypoint relaunches a kernel that exits (user code calling os._exit, the OOM
        killer), so a running pod does not prove the session's kernel lives: the in-pod
        server's launch counter does. Without it a dead kernel would look alive until the turn
        timed out.
        """
        try:
            current = await self._read(pod)
        except API_ERRORS as exc:
            # The API being down says nothing about the kernel: keep the last answer.
            log.warning("cannot read sandbox pod %s: %s", pod.name, api_message(exc))
            return self._last.get(pod.uid, True)
        result = current is not None and podstate.uid(current) == pod.uid and podstate.alive(current)
        kernel = await self._kernel_launch(pod) if result else None
        if kernel is not None:
            # The first launch seen is the session's kernel (a cold start's, or an adopted pod's).
            result = kernel > 0 and kernel == memo.setdefault(KERNEL_LAUNCH, kernel)
        self._last[pod.uid] = result
        return result

    async def _kernel_launch(self, pod: PodRef) -> int | None:
        """The in-pod server's launch counter, asked at most once a second per pod."""
        checked = self._launches.get(pod.uid)
        if checked and time.monotonic() - checked[0] < ALIVE_TTL:
            return checked[1]
        kernel = await self.server.kernel_launch(pod.ip)
        self._launches[pod.uid] = (time.monotonic(), kernel)
        return kernel

    async def _read(self, pod: PodRef) -> dict[str, Any] | None:
        """The pod from the pod cache when the cache says it runs; anything else is confirmed
        by the API server. The watch lags: a pod started a moment ago may be missing from the
        cache or still Pending there, and believing that retired a healthy sandbox mid-thread."""
        cached = self.pod_cache.get(pod.name)
        if cached is not None and podstate.uid(cached) == pod.uid and podstate.alive(cached):
            return cached
        return await pods.read(self.kube, pod.name)

    def launched(self, uid: str, launch: int | None, memo: MutableMapping[str, Any]) -> None:
        """The pod's server just said which kernel launch runs (``launch``, None if it could not
        be asked): the session's kernel, as the first check would have found a moment later."""
        if launch:
            self._launches[uid] = (time.monotonic(), launch)
            memo.setdefault(KERNEL_LAUNCH, launch)

    def touched(self, uid: str, when: float) -> None:
        """The annotation was written at ``when`` by the pod's creation or claim."""
        self._touched[uid] = when

    async def touch(self, pod: PodRef, now: float) -> None:
        """Write ``last-active``, at most every ``touch_every`` seconds: idle reaping needs no more."""
        if now - self._touched.get(pod.uid, 0.0) < self.touch_every:
            return
        self._touched[pod.uid] = now
        try:
            await self.kube.call(
                self.kube.core.patch_namespaced_pod, pod.name, self.kube.ns, objects.last_active_patch(now)
            )
        except API_ERRORS as exc:
            log.warning("could not record activity on pod %s: %s", pod.name, api_message(exc))

    def forget(self, uid: str) -> None:
        self._last.pop(uid, None)
        self._launches.pop(uid, None)
        self._touched.pop(uid, None)
