"""Finding sandboxes from the cluster alone (labels, Secrets), so any replica adopts any pod."""

from __future__ import annotations

from typing import Any

from controller.k8s import cleanup, podstate
from controller.k8s.api import Kube
from controller.k8s.connection import from_secret
from controller.k8s.names import all_sandboxes_selector, thread_selector
from controller.k8s.podcache import PodCache

# A thread's running pod, with the kernel's connection info (as in the pod) from its Secret.
Found = tuple[dict[str, Any], dict[str, Any]]


def _usable(pod: dict[str, Any], secret: dict[str, Any]) -> Found | None:
    connection = from_secret(secret)
    if podstate.pod_ip(pod) is None or connection is None or not podstate.thread_of(pod):
        return None  # unusable, or an unclaimed warm pod (no thread's sandbox)
    return pod, connection


async def find(kube: Kube, pod_cache: PodCache, thread_id: str) -> Found | None:
    """The thread's running pod: from the pod cache when it has one (an adoption), else from
    the API server, as a miss may be a pod the watch has not delivered yet."""
    candidates = [p for p in pod_cache.of_thread(thread_id) if podstate.alive(p)]
    for pod in candidates or await _listed(kube, thread_id):
        secret = await kube.read(kube.core.read_namespaced_secret, pod["metadata"]["name"])
        if secret is not None:  # unusable without its key; a start replaces it
            return _usable(pod, secret)
    return None


async def _listed(kube: Kube, thread_id: str) -> list[dict[str, Any]]:
    # resourceVersion=0: served by the API server's cache at once. A consistent list waits
    # up to ~100 ms after any recent write (the turn's own Lease) for that cache to catch up,
    # and a thread's pod was created at least a turn ago, long before the cache's lag.
    listing = await kube.get(
        kube.core.list_namespaced_pod,
        kube.ns,
        label_selector=thread_selector(thread_id),
        resource_version="0",
    )
    return [p for p in listing.get("items", []) if podstate.alive(p)]


async def running(kube: Kube, stuck_after: float, stale_secret_seconds: float) -> list[Found]:
    """Every thread's running pod; what no controller can use is swept on the way."""
    core, selector = kube.core, all_sandboxes_selector()
    pods = (await kube.get(core.list_namespaced_pod, kube.ns, label_selector=selector))["items"]
    secrets = (await kube.get(core.list_namespaced_secret, kube.ns, label_selector=selector))["items"]
    await cleanup.sweep(kube, pods, secrets, stuck_after, stale_secret_seconds)
    by_name = {s["metadata"]["name"]: s for s in secrets}
    pairs = [(p, by_name.get(p["metadata"]["name"])) for p in pods if podstate.alive(p)]
    return [found for p, s in pairs if s is not None and (found := _usable(p, s)) is not None]
