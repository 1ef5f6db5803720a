"""Kubernetes-backed settings for benchmarks on the real single-node cluster (hack/cluster/).

Like tests/cluster/conftest.py: the controller runs on this host and dials pod IPs; MinIO runs
here too, bound to the node IP so pods reach it. Each benchmark gets its own namespace
(``bench-<name>-<hex>``), deleted afterwards with everything in it.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client, config

from bench.common import LIFECYCLE
from controller.config import Settings
from devkit.minio import running_minio

ROOT = Path(__file__).resolve().parents[1]
KUBECONFIG = Path(os.environ.get("KUBECONFIG", "/var/lib/threadbox-cluster/admin.kubeconfig"))


def image_ref() -> str:
    """The sandbox image as hack/build-sandbox-image.sh tags it (cached by content hash)."""
    out = subprocess.run(
        [str(ROOT / "hack/build-sandbox-image.sh")], capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]


def api_client() -> Any:
    return config.new_client_from_config(config_file=str(KUBECONFIG))  # type: ignore[no-untyped-call]


def core_api() -> Any:
    return client.CoreV1Api(api_client())


def describe() -> str:
    """The cluster, for a result's header."""
    version = client.VersionApi(api_client()).get_code().git_version
    return (
        f"single-node Kubernetes {version} from hack/cluster (host processes, containerd + runc, "
        "bridge CNI, kube-router network policies)"
    )


@contextmanager
def k8s_settings(name: str, tmp: Path, **overrides: Any) -> Iterator[Settings]:
    """Settings for a Kubernetes-backed runtime in a fresh namespace, with MinIO on the node IP."""
    core = core_api()
    node = core.list_node().items[0]
    node_ip = next(a.address for a in node.status.addresses if a.type == "InternalIP")
    gateway = next(ipaddress.ip_network(node.spec.pod_cidr).hosts())  # cni0: where the host dials from
    namespace = f"bench-{name}-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        with running_minio(tmp / "minio", host=node_ip) as m:
            yield Settings(
                **{
                    "backend": "kubernetes",
                    "store": "minio",
                    "data_dir": tmp / "data",
                    "minio_endpoint": m.endpoint,
                    "minio_access_key": m.access_key,
                    "minio_secret_key": m.secret_key,
                    "minio_bucket": "bench",
                    "kubeconfig": KUBECONFIG,
                    "sandbox_namespace": namespace,
                    "sandbox_image": image_ref(),
                    "controller_cidrs": [f"{gateway}/32", f"{node_ip}/32"],
                    **LIFECYCLE,
                    **overrides,
                }
            )
    finally:
        core.delete_namespace(namespace)
