"""Pure builders of the sandbox's Kubernetes objects, as plain manifests (dicts).

Plain dicts rather than the client's V1 models: they are what the API sees, the unit
tests can assert on them field by field, and the client accepts them as request bodies.

Secret ownership: the Secret is created *before* the Pod, without an owner, and the
backend patches ``ownerReferences`` onto it once the Pod's UID is known. Creating the Pod
first would make the kubelet fail the Secret mount and retry it with a back-off (seconds
of start latency); the cost of Secret-first is a short window where a controller crash
leaves an ownerless Secret, which the backend sweeps (labelled, no Pod of the same name).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from controller.config import Settings
from controller.k8s.connection import KERNEL_PORTS, SERVER_PORT
from controller.k8s.names import (
    APP_LABEL,
    CONTAINER_NAME,
    CONTROLLER_APP,
    DEFAULT_DENY_NAME,
    EGRESS_LABEL,
    EGRESS_POLICY_PREFIX,
    LAST_ACTIVE_ANNOTATION,
    NETWORK_POLICY_NAME,
    POOL_CLAIMED,
    POOL_LABEL,
    PROFILE_NAME_LABEL,
    PROFILE_VERSION_LABEL,
    SANDBOX_APP,
    THREAD_LABEL,
    object_name,
    sandbox_labels,
    warm_labels,
)
from controller.k8s.placement import Placement, PullPolicy
from controller.profiles import Profile

SANDBOX_UID = 1000
SECRETS_DIR = "/var/run/threadbox"
WORKSPACE = "/workspace"
HOME = "/home/sandbox"
SCRATCH_SIZE = "256Mi"  # /tmp and HOME: caches only, never synced
# Every writable path is a tmpfs: the container's own disk holds only its logs.
EPHEMERAL_STORAGE_REQUEST = "32Mi"
# Unprivileged ICMP sockets let code send data anywhere the CNI forwards echo; "1 0" (an empty
# group range) removes them, and is one of the sysctls Pod Security "restricted" allows.
NO_PING_SYSCTL = {"name": "net.ipv4.ping_group_range", "value": "1 0"}
# With dnsPolicy None the API wants a nameserver: nothing answers on the pod's own loopback.
NO_RESOLVER = "127.0.0.1"
TERMINATION_GRACE_SECONDS = 30  # the entrypoint persists on SIGTERM before it exits
# How long a pod's entrypoint waits for its NetworkPolicy to deny a probe before it gives up
# (sandbox-image/threadbox_sandbox/policy.py); policies usually land within a second.
POLICY_CHECK_SECONDS = 30
THREAD_KEY = "thread_id"  # the Secret key a claimed warm pod's entrypoint reads its thread from
# What a profile sets of a pod, by the same name in both.
PROFILE_POD_FIELDS = (
    "image",
    "cpu_request",
    "cpu_limit",
    "memory_request",
    "memory_limit",
    "runtime_class_name",
    "preimport",
)


@dataclass(frozen=True)
class PodConfig:
    """The settings a sandbox pod is built from."""

    namespace: str
    image: str
    image_pull_policy: PullPolicy
    placement: Placement
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    workspace_size_limit: str
    ephemeral_storage_limit: str
    dns: bool  # False: the sandbox reaches storage by IP and gets no resolver at all
    active_deadline_seconds: int
    runtime_class_name: str | None
    max_file_bytes: int
    thread_max_files: int
    thread_max_bytes: int
    file_ttl_days: float
    max_output_bytes: int
    state_cap: int | None  # the kernel's saved variables, at most; None: state is not kept
    state_max_bytes: int = 0  # the state cap of a profile that keeps state
    profile: str = ""  # name@version of the profile it was built for; "": none
    egress: tuple[str, ...] = ()  # CIDRs of the profile's own egress allowlist
    preimport: tuple[str, ...] = ()  # modules a warm pod's kernel imports before its claim

    def for_profile(self, profile: Profile) -> PodConfig:
        """The pod of a thread (or warm pod) of this profile version: the server's settings,
        with what the profile sets."""
        return replace(
            self,
            **{name: getattr(profile, name) for name in PROFILE_POD_FIELDS},
            state_cap=self.state_max_bytes if profile.keep_state else None,
            profile=profile.label,
            egress=tuple(sorted(profile.egress_allow_cidrs)),
        )

    @classmethod
    def from_settings(cls, s: Settings) -> PodConfig:
        return cls(
            namespace=s.sandbox_namespace,
            image=s.sandbox_image,
            image_pull_policy=s.sandbox_image_pull_policy,
            placement=Placement.from_settings(s),
            cpu_request=s.sandbox_cpu_request,
            cpu_limit=s.sandbox_cpu_limit,
            memory_request=s.sandbox_memory_request,
            memory_limit=s.sandbox_memory_limit,
            workspace_size_limit=s.workspace_size_limit,
            ephemeral_storage_limit=s.sandbox_ephemeral_storage_limit,
            dns=needs_dns(s.sandbox_minio_endpoint or s.minio_endpoint),
            active_deadline_seconds=s.active_deadline_seconds,
            runtime_class_name=s.runtime_class_name,
            max_file_bytes=s.max_file_bytes,
            thread_max_files=s.thread_max_files,
            thread_max_bytes=s.thread_max_bytes,
            file_ttl_days=s.file_ttl_days,
            max_output_bytes=s.max_output_bytes,
            state_cap=s.state_max_bytes if s.keep_state else None,
            state_max_bytes=s.state_max_bytes,
            preimport=tuple(s.warm_preimport),
        )


def needs_dns(endpoint: str | None) -> bool:
    """Whether a sandbox needs a resolver to reach storage at ``host:port`` (an IP needs none)."""
    if endpoint is None:
        return False
    host = endpoint.rsplit(":", 1)[0].strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def profile_hash(cfg: PodConfig) -> str:
    """Names the settings a pod was built from: a warm pod of another profile is never handed out."""
    return hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:12]


def egress_id(cidrs: tuple[str, ...]) -> str:
    """Names an egress allowlist: its pods' label value, and its NetworkPolicy's suffix."""
    return hashlib.sha256(",".join(sorted(cidrs)).encode()).hexdigest()[:12]


def profile_labels(cfg: PodConfig) -> dict[str, str]:
    if not cfg.profile:
        return {}
    name, version = cfg.profile.split("@")
    labels = {PROFILE_NAME_LABEL: name, PROFILE_VERSION_LABEL: version}
    if cfg.egress:
        labels[EGRESS_LABEL] = egress_id(cfg.egress)
    return labels


def _env(identity: dict[str, str], cfg: PodConfig) -> list[dict[str, str]]:
    # Exactly the contract's variables: nothing of the controller's own environment.
    values = {
        **identity,
        "THREADBOX_SECRETS_DIR": SECRETS_DIR,
        "THREADBOX_WORKSPACE": WORKSPACE,
        "THREADBOX_MAX_FILE_BYTES": str(cfg.max_file_bytes),
        "THREADBOX_THREAD_MAX_FILES": str(cfg.thread_max_files),
        "THREADBOX_THREAD_MAX_BYTES": str(cfg.thread_max_bytes),
        "THREADBOX_FILE_TTL_DAYS": f"{cfg.file_ttl_days:g}",
        "THREADBOX_MAX_OUTPUT_BYTES": str(cfg.max_output_bytes),
        "THREADBOX_POLICY_CHECK_SECONDS": str(POLICY_CHECK_SECONDS),
    }
    if cfg.state_cap is not None:  # from the start, so a pod saves on SIGTERM with no load asked
        values["THREADBOX_STATE_MAX_BYTES"] = str(cfg.state_cap)
    return [{"name": k, "value": v} for k, v in values.items()]


def _container(identity: dict[str, str], cfg: PodConfig) -> dict[str, Any]:
    ports = [{"name": name.removesuffix("_port"), "containerPort": p} for name, p in KERNEL_PORTS.items()]
    return {
        "name": CONTAINER_NAME,
        "image": cfg.image,
        "imagePullPolicy": cfg.image_pull_policy,
        "ports": [*ports, {"name": "pod-server", "containerPort": SERVER_PORT}],
        "env": _env(identity, cfg),
        "workingDir": WORKSPACE,
        "resources": {
            "requests": {
                "cpu": cfg.cpu_request,
                "memory": cfg.memory_request,
                "ephemeral-storage": EPHEMERAL_STORAGE_REQUEST,
            },
            "limits": {
                "cpu": cfg.cpu_limit,
                "memory": cfg.memory_limit,
                "ephemeral-storage": cfg.ephemeral_storage_limit,
            },
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SANDBOX_UID,
            "runAsGroup": SANDBOX_UID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # /healthz is the in-pod server's only unauthenticated path (the kubelet has no bearer).
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": SERVER_PORT},
            "periodSeconds": 1,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "volumeMounts": [
            {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True},
            {"name": "workspace", "mountPath": WORKSPACE},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "home", "mountPath": HOME},
        ],
    }


def sandbox_pod(thread_id: str, cfg: PodConfig, now: float) -> dict[str, Any]:
    """The thread's pod: one sandbox container, locked down, with writable emptyDirs only."""
    name = object_name(thread_id)
    return _pod(name, sandbox_labels(thread_id), {"THREADBOX_THREAD_ID": thread_id}, cfg, now)


def warm_pod(name: str, cfg: PodConfig, now: float) -> dict[str, Any]:
    """A pool pod: the same sandbox with no thread; it waits for POST /bind (THREADBOX_WARM)."""
    warm = {"THREADBOX_WARM": "1"}
    if cfg.preimport:  # off a thread's path: a cold start does not wait for the imports
        warm["THREADBOX_PREIMPORT"] = ",".join(cfg.preimport)
    return _pod(name, warm_labels(profile_hash(cfg)), warm, cfg, now)


def _pod(
    name: str, labels: dict[str, str], identity: dict[str, str], cfg: PodConfig, now: float
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",  # the entrypoint relaunches the kernel; a dead container is a dead sandbox
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        # Backstop: even a sandbox the controller lost track of ends; its credentials last as long.
        "activeDeadlineSeconds": cfg.active_deadline_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SANDBOX_UID,
            "runAsGroup": SANDBOX_UID,
            "fsGroup": SANDBOX_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
            "sysctls": [NO_PING_SYSCTL],
        },
        "containers": [_container(identity, cfg)],
        "volumes": [
            {
                "name": "secrets",
                "secret": {"secretName": name, "defaultMode": 0o440},
            },
            _scratch("workspace", cfg.workspace_size_limit),
            _scratch("tmp", SCRATCH_SIZE),
            _scratch("home", SCRATCH_SIZE),
        ],
    }
    spec.update(cfg.placement.spec_fields())
    if cfg.runtime_class_name:
        spec["runtimeClassName"] = cfg.runtime_class_name
    if not cfg.dns:
        spec["dnsPolicy"] = "None"
        spec["dnsConfig"] = {"nameservers": [NO_RESOLVER]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": cfg.namespace,
            # The platform's labels and annotations never replace threadbox's own, which select
            # and track the pod.
            "labels": {**cfg.placement.extra_labels, **labels, **profile_labels(cfg)},
            "annotations": {
                **cfg.placement.extra_annotations,
                LAST_ACTIVE_ANNOTATION: last_active_value(now),
            },
        },
        "spec": spec,
    }


def _scratch(name: str, size: str) -> dict[str, Any]:
    """A tmpfs of ``size``: a write past it fails at once with ENOSPC, where a disk-backed
    emptyDir only gets the pod evicted tens of seconds later. Its pages count in the pod's
    memory limit, which is why that limit must exceed the scratch sizes (see the chart)."""
    return {"name": name, "emptyDir": {"medium": "Memory", "sizeLimit": size}}


def last_active_value(when: float) -> str:
    return f"{when:.3f}"


def last_active_patch(when: float) -> dict[str, Any]:
    return {"metadata": {"annotations": {LAST_ACTIVE_ANNOTATION: last_active_value(when)}}}


def sandbox_secret(
    thread_id: str, namespace: str, connection: dict[str, Any], storage: dict[str, Any]
) -> dict[str, Any]:
    """connection.json and storage.json, mounted read-only into the pod; owner set later (see above)."""
    data = {"connection.json": json.dumps(connection), "storage.json": json.dumps(storage)}
    return _secret(object_name(thread_id), namespace, sandbox_labels(thread_id), data)


def warm_secret(name: str, cfg: PodConfig, connection: dict[str, Any]) -> dict[str, Any]:
    """A warm pod's Secret: the kernel key only. No thread's credentials exist before a claim."""
    labels = warm_labels(profile_hash(cfg))
    return _secret(name, cfg.namespace, labels, {"connection.json": json.dumps(connection)})


def _secret(name: str, namespace: str, labels: dict[str, str], data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "stringData": data,
    }


def _claimed_labels(thread_id: str) -> dict[str, str]:
    return {THREAD_LABEL: thread_id, POOL_LABEL: POOL_CLAIMED}


def claim_patch(thread_id: str, resource_version: str, now: float) -> dict[str, Any]:
    """Binds a warm pod to a thread in one write. The resourceVersion is a precondition: of two
    controllers claiming the same pod, all but one get 409 Conflict and try another pod."""
    return {
        "metadata": {
            "resourceVersion": resource_version,
            "labels": _claimed_labels(thread_id),
            "annotations": {LAST_ACTIVE_ANNOTATION: last_active_value(now)},
        }
    }


def bind_secret_patch(thread_id: str, storage: dict[str, Any]) -> dict[str, Any]:
    """Records a claim in the warm pod's Secret: found by the thread's labels, and a restarted
    container reads its thread and credentials from the mount as a cold pod does."""
    return {
        "metadata": {"labels": _claimed_labels(thread_id)},
        "stringData": {"storage.json": json.dumps(storage), THREAD_KEY: thread_id},
    }


def owner_reference(pod_name: str, pod_uid: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod_uid, "blockOwnerDeletion": False}


def secret_owner_patch(pod_name: str, pod_uid: str) -> dict[str, Any]:
    """Makes the garbage collector delete the Secret with its Pod."""
    return {"metadata": {"ownerReferences": [owner_reference(pod_name, pod_uid)]}}


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def sandbox_network_policy(
    namespace: str,
    controller_cidrs: list[str],
    storage: tuple[dict[str, Any], int] | None,
    egress_allow_cidrs: list[str],
) -> dict[str, Any]:
    """One namespace-wide policy for every sandbox pod.

    Ingress: only the controller (pods labelled threadbox-controller in any namespace, or
    ``controller_cidrs`` when it runs outside the cluster), only to the kernel and in-pod server ports.
    Sandboxes never reach each other. Egress: cluster DNS, MinIO (``storage`` = peer and port)
    and ``egress_allow_cidrs``; nothing else, so not the API server and not the node.
    """
    sources: list[dict[str, Any]] = [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {APP_LABEL: CONTROLLER_APP}}},
        *({"ipBlock": {"cidr": cidr}} for cidr in controller_cidrs),
    ]
    egress: list[dict[str, Any]] = [
        {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        }
    ]
    if storage is not None:
        peer, port = storage
        egress.append({"to": [peer], "ports": _tcp(port)})
    if egress_allow_cidrs:
        egress.append({"to": [{"ipBlock": {"cidr": cidr}} for cidr in egress_allow_cidrs]})
    ingress = [{"from": sources, "ports": _tcp(*KERNEL_PORTS.values(), SERVER_PORT)}]
    return _sandbox_policy(NETWORK_POLICY_NAME, namespace, ingress=ingress, egress=egress)


def egress_policy(namespace: str, cidrs: tuple[str, ...]) -> dict[str, Any]:
    """What pods of a profile with its own allowlist may reach on top of the shared policy
    (NetworkPolicies add up): those CIDRs. Named by the list, so profiles of the same list
    share it and a changed list is a new policy, never a rewrite under running pods."""
    ident = egress_id(cidrs)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": EGRESS_POLICY_PREFIX + ident,
            "namespace": namespace,
            "labels": {APP_LABEL: SANDBOX_APP},
        },
        "spec": {
            "podSelector": {"matchLabels": {APP_LABEL: SANDBOX_APP, EGRESS_LABEL: ident}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": cidr}} for cidr in cidrs]}],
        },
    }


def default_deny_policy(namespace: str) -> dict[str, Any]:
    """Denies every sandbox pod all traffic unless another policy allows it.

    It never changes, so it can exist before the first sandbox (the chart installs it; the
    controller creates it at start): a pod is never unfiltered because the allow policy, which
    depends on settings, is being written or failed to be.
    """
    return _sandbox_policy(DEFAULT_DENY_NAME, namespace)


def _sandbox_policy(name: str, namespace: str, **rules: list[dict[str, Any]]) -> dict[str, Any]:
    """A policy over both directions for every sandbox pod; a direction without rules is denied."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": {APP_LABEL: SANDBOX_APP}},
        "spec": {
            "podSelector": {"matchLabels": {APP_LABEL: SANDBOX_APP}},
            "policyTypes": ["Ingress", "Egress"],
            **rules,
        },
    }


def host_cidr(ip: str) -> str:
    return f"{ip}/128" if ":" in ip else f"{ip}/32"


def ip_peer(ip: str) -> dict[str, Any]:
    return {"ipBlock": {"cidr": host_cidr(ip)}}
