"""Deleting what no controller can use: the sweep of one listing, and the CLI's full cleanup."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from controller.k8s import pods, podstate
from controller.k8s.api import Kube
from controller.k8s.names import NETWORK_POLICY_NAME, all_sandboxes_selector

log = logging.getLogger(__name__)


async def sweep(
    kube: Kube,
    pod_list: Sequence[dict[str, Any]],
    secrets: Sequence[dict[str, Any]],
    stuck_after: float,
    stale_secret_seconds: float,
) -> None:
    """Delete ended pods, stuck ones, and Secrets a crash mid-start left without their pod."""
    now = time.time()
    for pod in pod_list:
        phase = (pod.get("status") or {}).get("phase")
        ended = phase in ("Succeeded", "Failed")
        stuck = not podstate.alive(pod) and now - podstate.created(pod) > stuck_after
        if (ended or stuck) and not podstate.terminating(pod):
            log.warning("deleting sandbox pod %s (phase %s)", pod["metadata"]["name"], phase)
            await pods.delete(kube, pod["metadata"]["name"], podstate.uid(pod), wait=False)
    pod_names = {p["metadata"]["name"] for p in pod_list}
    for secret in secrets:
        meta = secret["metadata"]
        old = now - podstate.parse_time(meta["creationTimestamp"]) > stale_secret_seconds
        if meta["name"] not in pod_names and not meta.get("ownerReferences") and old:
            await pods.delete_secret(kube, meta["name"], owner_uid=None)


async def remove_everything(kube: Kube) -> None:
    """Every sandbox object of the namespace: pods (warm ones too), Secrets, turn Leases and the
    allow policy. The default-deny policy stays, so no pod started later is ever unfiltered."""
    selector = all_sandboxes_selector()
    for delete in (
        kube.core.delete_collection_namespaced_pod,
        kube.core.delete_collection_namespaced_secret,
        kube.coordination.delete_collection_namespaced_lease,
    ):
        await kube.call(delete, kube.ns, label_selector=selector)
    await kube.delete(kube.net.delete_namespaced_network_policy, NETWORK_POLICY_NAME)
