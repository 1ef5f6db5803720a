"""Kubernetes Events on sandbox pods, so `kubectl describe pod` tells an operator its story.

Best effort by design: an Event that cannot be written is logged and never fails a turn.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from typing import Any

from controller.k8s.api import API_ERRORS, Kube, api_message

log = logging.getLogger(__name__)

COMPONENT = "threadbox-controller"


def pod_event(
    namespace: str, pod_name: str, pod_uid: str, reason: str, message: str, now: datetime, warning: bool
) -> dict[str, Any]:
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{pod_name}.{secrets.token_hex(8)}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": pod_name,
            "namespace": namespace,
            "uid": pod_uid,
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventRecorder:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def record(
        self, pod_name: str, pod_uid: str, reason: str, message: str, warning: bool = False
    ) -> None:
        # Any: the client serialises a plain dict as well as its CoreV1Event model.
        body: Any = pod_event(self.kube.ns, pod_name, pod_uid, reason, message, datetime.now(UTC), warning)
        try:
            await self.kube.call(self.kube.core.create_namespaced_event, self.kube.ns, body)
        except API_ERRORS as exc:
            log.warning("could not record event %s on pod %s: %s", reason, pod_name, api_message(exc))
