"""End-to-end fixtures on the real single-node cluster (hack/cluster/) and a real MinIO.

The controller runs on the host, as in development: it dials pod IPs over the node's cni0
bridge. MinIO runs on the host too, bound to the node IP so pods can reach it, and the
sandbox NetworkPolicy allows exactly that address. One fresh namespace per session; at the
end no sandbox pod or Secret may be left in it.

Every test that starts sandboxes runs twice: under runc, and under gVisor (the ``gvisor``
RuntimeClass that hack/cluster/up registers). The namespace enforces Pod Security
"restricted", as the chart's sandbox namespace does.

When this machine cannot run the cluster or build the image, every test here is skipped
with one loud ``SKIPPED: kubernetes-cluster: <reason>`` (or ``sandbox-image``, or ``gvisor``) line.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, config

from controller.api import create_app
from controller.backends.kubernetes import KubernetesBackend
from controller.config import Settings
from controller.k8s.config import KubernetesConfig
from controller.k8s.names import all_sandboxes_selector
from controller.runtime import build_runtime
from devkit.client import ADMIN_TOKEN, bearer
from devkit.minio import MinioServer, MinioUnavailable, running_minio
from tests.support.client import RuntimeClient
from tests.support.poll import wait_until
from tests.support.server import serve

ROOT = Path(__file__).resolve().parents[2]
RESTRICTED = "pod-security.kubernetes.io/enforce"
pytestmark = pytest.mark.cluster


@dataclass
class Cluster:
    kubeconfig: Path
    namespace: str
    image: str
    node_ip: str
    gateway_ip: str  # cni0's address: the source of the host's connections to pods
    core: Any  # kubernetes.client.CoreV1Api

    def pods(self, thread_id: str | None = None) -> list[Any]:
        selector = all_sandboxes_selector() + (f",threadbox.dev/thread={thread_id}" if thread_id else "")
        return list(self.core.list_namespaced_pod(self.namespace, label_selector=selector).items)

    def secrets(self) -> list[Any]:
        return list(
            self.core.list_namespaced_secret(self.namespace, label_selector=all_sandboxes_selector()).items
        )

    def wait(self, what: str, check: Any, timeout: float = 60) -> None:
        if not wait_until(check, timeout, interval=0.25):
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def _skip(line: str) -> None:
    print(f"\n{line}", file=sys.stderr)  # loud in the run log even without -rs
    pytest.skip(line)


def _run_script(script: str, component: str, timeout: float) -> str:
    proc = subprocess.run([str(ROOT / script)], capture_output=True, text=True, timeout=timeout)
    if proc.returncode == 3:
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("SKIPPED:")]
        _skip(lines[-1] if lines else f"SKIPPED: {component}: {script} cannot run on this machine")
    if proc.returncode:
        raise RuntimeError(f"{script} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if sys.platform != "linux":
        _skip("SKIPPED: kubernetes-cluster: needs Linux")
    out = _run_script("hack/cluster/up", "kubernetes-cluster", timeout=5400)
    found = re.search(r"export KUBECONFIG=(\S+)", out)
    assert found, f"hack/cluster/up printed no KUBECONFIG line:\n{out}"
    kubeconfig = Path(found.group(1))
    image = _run_script("hack/build-sandbox-image.sh", "sandbox-image", timeout=3600).strip().splitlines()[-1]
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))  # type: ignore[no-untyped-call]
    node = core.list_node().items[0]
    status, spec = node.status, node.spec  # a running node has its addresses and its pod CIDR
    assert (
        status is not None and status.addresses is not None and spec is not None and spec.pod_cidr is not None
    )
    node_ip = next(a.address for a in status.addresses if a.type == "InternalIP")
    gateway = str(next(ipaddress.ip_network(spec.pod_cidr).hosts()))  # the bridge plugin's isGateway address
    namespace = f"tb-e2e-{secrets.token_hex(3)}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace, labels={RESTRICTED: "restricted"}))
    )
    c = Cluster(kubeconfig, namespace, image, node_ip, gateway, core)
    try:
        yield c
        # Every test cleaned up through the backend; nothing may be left behind.
        c.wait("sandbox Secrets to be garbage-collected", lambda: not c.secrets(), timeout=60)
        assert [p.metadata.name for p in c.pods()] == []
        assert [s.metadata.name for s in c.secrets()] == []
    finally:
        core.delete_namespace(namespace)


@contextmanager
def accepting(sock: socket.socket) -> Iterator[int]:
    """Accepts (and drops) every connection on ``sock`` until the block ends; yields its port.
    What a sandbox must not reach: the host reaching it is each probe's positive control."""
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                sock.accept()[0].close()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()


@pytest.fixture
def node_listener(cluster: Cluster) -> Iterator[int]:
    """A port on the node IP that answers the host; every sandbox policy denies it."""
    with accepting(socket.create_server((cluster.node_ip, 0))) as port:
        with socket.create_connection((cluster.node_ip, port), timeout=3):
            pass
        yield port


def minio_on_node(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioServer]:
    """MinIO on the node IP: the controller and the pods both reach it there."""
    try:
        with running_minio(tmp_path_factory.mktemp("minio") / "data", host=cluster.node_ip) as server:
            yield server
    except MinioUnavailable as exc:
        _skip(str(exc))


cluster_minio = pytest.fixture(scope="session", name="cluster_minio")(minio_on_node)


@pytest.fixture(scope="session", params=["runc", "gvisor"])
def runtime_class(request: pytest.FixtureRequest, cluster: Cluster) -> str | None:
    """The RuntimeClass sandboxes run under: None (the cluster default, runc) or gVisor."""
    if request.param == "runc":
        return None
    classes = client.NodeV1Api(cluster.core.api_client).list_runtime_class().items
    if request.param not in {c.metadata.name for c in classes if c.metadata is not None}:
        _skip("SKIPPED: gvisor: no gvisor RuntimeClass (hack/cluster/build-gvisor could not build runsc)")
    return str(request.param)


@pytest.fixture
def k8s_settings(
    cluster: Cluster, cluster_minio: MinioServer, runtime_class: str | None, tmp_path: Path
) -> Any:
    """``k8s_settings(**overrides) -> dict`` of settings for a kubernetes-backed controller."""
    bucket = cluster_minio.store().bucket  # one bucket per test

    def make(**overrides: Any) -> dict[str, Any]:
        return {
            "backend": "kubernetes",
            "store": "minio",
            "data_dir": tmp_path / "data",
            "minio_endpoint": cluster_minio.endpoint,
            "minio_access_key": cluster_minio.access_key,
            "minio_secret_key": cluster_minio.secret_key,
            "minio_bucket": bucket,
            "kubeconfig": cluster.kubeconfig,
            "sandbox_namespace": cluster.namespace,
            "sandbox_image": cluster.image,
            "sandbox_cpu_request": "100m",
            "sandbox_memory_request": "128Mi",
            "controller_cidrs": [f"{cluster.gateway_ip}/32", f"{cluster.node_ip}/32"],
            "start_timeout": 120,
            "exec_timeout": 60,
            # unset for runc: a subprocess controller gets these as environment variables
            **({"runtime_class_name": runtime_class} if runtime_class else {}),
            **overrides,
        }

    return make


@pytest.fixture
def k8s_api(api: Any, k8s_settings: Any) -> Any:
    """The shared ``api`` fixture with a Kubernetes backend: ``k8s_api(**overrides) -> httpx.Client``."""

    def start(**overrides: Any) -> httpx.Client:
        return api(**k8s_settings(**overrides))  # type: ignore[no-any-return]

    return start


@asynccontextmanager
async def connected(settings: Settings | KubernetesConfig) -> AsyncIterator[KubernetesBackend]:
    """A backend with its API client open, for find(), list() and stop() without its watch or pool."""
    config = settings if isinstance(settings, KubernetesConfig) else KubernetesConfig.from_settings(settings)
    backend = KubernetesBackend(config)
    await backend.kube.open()
    try:
        yield backend
    finally:
        await backend.close()


@contextmanager
def controller(settings: dict[str, Any]) -> Iterator[RuntimeClient]:
    """A controller this test can shut down in the middle (the ``api`` fixture stops at teardown)."""
    runtime = build_runtime(Settings(**{"admin_token": ADMIN_TOKEN, **settings}))
    with (
        serve(create_app(runtime)) as url,
        RuntimeClient(
            runtime, base_url=url, headers=bearer(ADMIN_TOKEN), timeout=httpx.Timeout(10, read=180)
        ) as http,
    ):
        yield http


@pytest.fixture(autouse=True)
def stop_sandboxes_after_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Controllers keep pods on shutdown (a restart adopts them), so each test's pods are
    stopped afterwards through the backend: that also exercises stop() removing pod and Secret."""
    yield
    if not {"cluster", "cluster_minio"} <= set(request.fixturenames):
        return  # no sandbox without storage
    c: Cluster = request.getfixturevalue("cluster")
    minio: MinioServer = request.getfixturevalue("cluster_minio")
    settings = Settings(
        backend="kubernetes",
        store="minio",
        minio_endpoint=minio.endpoint,
        minio_access_key=minio.access_key,
        minio_secret_key=minio.secret_key,  # type: ignore[arg-type]
        kubeconfig=c.kubeconfig,
        sandbox_namespace=c.namespace,
    )

    async def stop_all() -> None:
        async with connected(settings) as backend:
            for info in await backend.list():
                await backend.stop(info)

    asyncio.run(stop_all())
    for pod in c.pods():  # dead ones that list() does not return
        c.core.delete_namespaced_pod(pod.metadata.name, c.namespace, grace_period_seconds=0)
    c.wait("the test's sandbox pods to be gone", lambda: not c.pods(), timeout=60)
