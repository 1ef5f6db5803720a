"""MinIO running inside the cluster, behind a Service, as the Helm chart's users run it.

A NetworkPolicy sees the pod IP after a Service IP was translated, so allowing the address
the MinIO name resolves to would block sandboxes; ``sandbox_minio_peer`` selects its pods.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from controller.k8s.names import NETWORK_POLICY_NAME
from controller.k8s.objects import ip_peer, sandbox_network_policy
from devkit.minio import MinioServer
from tests.cluster.conftest import Cluster
from tests.support.client import create_thread, run, stdout

pytestmark = pytest.mark.cluster

APP = {"app": "tb-minio"}


@dataclass
class InCluster:
    namespace: str
    pod_ip: str
    service_ip: str
    user: str
    password: str


def _minio_pod(image: str, bin_dir: str, user: str, password: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "minio", "labels": APP},
        "spec": {
            "containers": [
                {
                    "name": "minio",
                    "image": image,  # any image: the static MinIO binary comes from the host
                    "imagePullPolicy": "Never",
                    "command": ["/minio-bin/minio", "server", "/data", "--address", ":9000", "--quiet"],
                    "env": [
                        {"name": "MINIO_ROOT_USER", "value": user},
                        {"name": "MINIO_ROOT_PASSWORD", "value": password},
                    ],
                    "securityContext": {"runAsUser": 0},
                    "volumeMounts": [
                        {"name": "bin", "mountPath": "/minio-bin", "readOnly": True},
                        {"name": "data", "mountPath": "/data"},
                    ],
                }
            ],
            "volumes": [
                {"name": "bin", "hostPath": {"path": bin_dir, "type": "Directory"}},
                {"name": "data", "emptyDir": {}},
            ],
        },
    }


def _wait_listening(ip: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((ip, 9000), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture
def in_cluster_minio(cluster: Cluster, cluster_minio: MinioServer) -> Iterator[InCluster]:
    ns = f"{cluster.namespace}-minio"
    user, password = "tbadmin", secrets.token_hex(12)
    cluster.core.create_namespace({"metadata": {"name": ns}})
    try:
        cluster.core.create_namespaced_pod(
            ns, _minio_pod(cluster.image, str(cluster_minio.bin_dir), user, password)
        )
        service = {"metadata": {"name": "minio"}, "spec": {"selector": APP, "ports": [{"port": 9000}]}}
        svc = cluster.core.create_namespaced_service(ns, service)
        cluster.wait(
            "the MinIO pod to run", lambda: cluster.core.read_namespaced_pod("minio", ns).status.pod_ip, 90
        )
        pod_ip = cluster.core.read_namespaced_pod("minio", ns).status.pod_ip
        _wait_listening(pod_ip)
        yield InCluster(ns, pod_ip, svc.spec.cluster_ip, user, password)
    finally:
        cluster.core.delete_namespace(ns, body=client.V1DeleteOptions(grace_period_seconds=0))


def _probe(expect_open: bool, ip: str) -> str:
    """Kernel code: a fresh connection to MinIO, retried while the policy change propagates."""
    return (
        "import socket, time\n"
        "deadline = time.monotonic() + 30\n"
        "while True:\n"
        "    try:\n"
        f"        socket.create_connection(({ip!r}, 9000), timeout=2).close(); state = 'open'\n"
        "    except OSError:\n"
        "        state = 'blocked'\n"
        f"    if state == {'open' if expect_open else 'blocked'!r} or time.monotonic() > deadline:\n"
        "        break\n"
        "    time.sleep(0.5)\n"
        "print(state)\n"
    )


def test_sandboxes_reach_in_cluster_minio_only_through_the_peer(
    cluster: Cluster, k8s_api: Any, in_cluster_minio: InCluster
) -> None:
    m = in_cluster_minio
    settings = {
        "minio_endpoint": f"{m.pod_ip}:9000",  # the controller runs on the host here
        "minio_access_key": m.user,
        "minio_secret_key": m.password,
        "minio_bucket": "threadbox",
        "sandbox_minio_endpoint": f"{m.service_ip}:9000",  # what sandboxes dial, as in a chart install
    }
    peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": m.namespace}},
        "podSelector": {"matchLabels": APP},
    }
    api = k8s_api(**settings, sandbox_minio_peer=peer)
    tid = create_thread(api, "in-cluster-minio")
    events = run(api, tid, "open('made-in-pod.txt', 'w').write('hello')\n" + _probe(True, m.service_ip))
    assert stdout(events) == "open\n"
    assert not [e for e in events if e["type"] == "error"]
    assert api.runtime.store.read_file(tid, "made-in-pod.txt") == b"hello"

    # Negative control: the policy a controller without the peer writes (MinIO allowed by the
    # address its name resolves to, the Service IP) refuses fresh connections from the same pod.
    # (A sandbox started under it would hang restoring its files until start_timeout.)
    s = api.runtime.settings
    policy = sandbox_network_policy(
        s.sandbox_namespace, s.controller_cidrs, (ip_peer(m.service_ip), 9000), []
    )
    client.NetworkingV1Api(cluster.core.api_client).replace_namespaced_network_policy(
        NETWORK_POLICY_NAME,
        s.sandbox_namespace,
        policy,  # type: ignore[arg-type]  # a dict body goes as is
    )
    assert stdout(run(api, tid, _probe(False, m.service_ip))) == "blocked\n"
