"""The Kubernetes backend's view of a sandbox: a running pod, its UID and IP, built from the
pod's manifest by pure functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.backends.base import Kind, SandboxInfo, Session
from controller.k8s import podstate
from controller.k8s.connection import for_pod
from controller.k8s.podserver import PodRef


@dataclass(kw_only=True)
class PodSandbox(SandboxInfo):
    uid: str
    pod_ip: str
    warm: Session | None = None  # a warm claim's kernel session, connected, until ready() hands it over
    liveness: dict[str, Any] = field(default_factory=dict)  # what k8s/liveness.py remembers of it


def pod_ref(info: PodSandbox) -> PodRef:
    return PodRef(info.name, info.uid, info.pod_ip, str(info.connection["key"]))


def adopted(pod: dict[str, Any], connection: dict[str, Any]) -> PodSandbox:
    return pod_sandbox(podstate.thread_of(pod), pod, connection, podstate.last_active(pod), "adopted")


def pod_sandbox(
    thread_id: str, pod: dict[str, Any], connection: dict[str, Any], last_active: float, kind: Kind
) -> PodSandbox:
    """A running pod with an IP, dialled with the kernel key it holds."""
    ip = podstate.pod_ip(pod)
    assert ip is not None  # callers pass running pods only
    name, created = pod["metadata"]["name"], podstate.created(pod)
    connection = for_pod(connection, ip)
    return PodSandbox(
        thread_id, name, connection, created, last_active, None, kind, uid=podstate.uid(pod), pod_ip=ip
    )
