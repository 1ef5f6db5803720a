"""No code before its policy: a sandbox pod is unreachable, and reaches nothing denied, from the
first moment anything of it runs, under runc and under gVisor.

A CNI applies a pod's NetworkPolicy a moment after its process starts. The entrypoint therefore
proves the policy in force before its kernel binds a port or runs user code
(``threadbox_sandbox/policy.py``). Two probes check that from outside the controller:

- the window: sandboxes started one after another each try a denied port with their very first
  instruction; the positive control is a pod with the same labels and no such proof, which
  reaches that port in its own first moments;
- the ingress leak: an attacker pod with no policy of its own subscribes to the IOPub port of
  every address in the pod range from before the sandboxes exist; it must never read a
  thread's output (the policy keeps it out, and CurveZMQ would refuse it anyway). The positive
  control is a decoy kernel started without these protections (no policy, no CURVE keys), whose
  output the attacker does read.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
import zmq
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import KernelConnectionInfo
from kubernetes.client.exceptions import ApiException

from controller.k8s.connection import new_connection
from controller.k8s.names import APP_LABEL, SANDBOX_APP
from tests.cluster.conftest import Cluster
from tests.support.client import create_thread, run, stdout

pytestmark = pytest.mark.cluster

STARTS = 6
PYTHON = "/opt/sandbox/bin/python"
POD_TIMEOUT = 120

# Connects to a denied port from the container's first instruction, for a few seconds.
WINDOW_PROBE = """
import socket, sys, time
reached, deadline = 0, time.monotonic() + 5
while time.monotonic() < deadline:
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.2).close()
        reached += 1
    except OSError:
        time.sleep(0.01)
print("reached", reached, flush=True)
time.sleep(3600)  # a pod that ended would be swept by the controller before its log is read
"""

# Subscribes to every IOPub it can find in the pod range and prints what it reads.
ATTACKER = """
import sys, time, zmq
sub = zmq.Context().socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"")
sub.setsockopt(zmq.RECONNECT_IVL, 100)
sub.setsockopt(zmq.RECONNECT_IVL_MAX, 100)
for host in range(2, 255):
    sub.connect(f"tcp://{sys.argv[1]}{host}:5556")
print("subscribed", flush=True)
while True:
    if sub.poll(500):
        print(b" ".join(sub.recv_multipart()).decode(errors="replace"), flush=True)
"""

DECOY = (
    'printf "%s" "$CONNECTION" > /tmp/kernel.json && exec '
    + PYTHON
    + " -m ipykernel_launcher -f /tmp/kernel.json"
)


def _restricted(
    name: str, args: list[str], labels: dict[str, str], env: dict[str, str] | None = None
) -> dict[str, Any]:
    """A pod of the sandbox image that Pod Security "restricted" admits."""
    container = {
        "name": "c",
        "image": "IMAGE",
        "imagePullPolicy": "IfNotPresent",
        "command": args,
        "env": [{"name": k, "value": v} for k, v in (env or {"HOME": "/tmp"}).items()],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0, "containers": [container]},
    }


def _start(cluster: Cluster, body: dict[str, Any], runtime_class: str | None) -> str:
    body["spec"]["containers"][0]["image"] = cluster.image
    if runtime_class:
        body["spec"]["runtimeClassName"] = runtime_class
    cluster.core.create_namespaced_pod(cluster.namespace, body)
    return str(body["metadata"]["name"])


def _log(cluster: Cluster, name: str) -> str:
    """The pod's log so far; empty while its container is still being created."""
    try:
        return str(cluster.core.read_namespaced_pod_log(name, cluster.namespace))
    except ApiException as exc:
        if exc.status not in (400, 404):  # 404: the log endpoint before the kubelet has the pod
            raise
        return ""


def _phase(cluster: Cluster, name: str) -> Any:
    return cluster.core.read_namespaced_pod(name, cluster.namespace).status


def _delete(cluster: Cluster, name: str) -> None:
    cluster.core.delete_namespaced_pod(name, cluster.namespace, grace_period_seconds=0)


def test_no_sandbox_reaches_a_node_listener_from_its_first_instruction(
    cluster: Cluster, k8s_api: Any, node_listener: int, runtime_class: str | None
) -> None:
    client = k8s_api()
    first_cell = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(({cluster.node_ip!r}, {node_listener}), timeout=1).close(); print('reached')\n"
        "except OSError as exc:\n"
        "    print('denied', type(exc).__name__)\n"
    )
    for n in range(STARTS):
        out = stdout(run(client, create_thread(client, f"window-{n}"), first_cell))
        assert out.startswith("denied"), (n, out)

    # Positive control: the same labels, so the same policies, but no proof before the code.
    name = _start(
        cluster,
        _restricted(
            f"window-{secrets.token_hex(3)}",
            [PYTHON, "-c", WINDOW_PROBE, cluster.node_ip, str(node_listener)],
            {APP_LABEL: SANDBOX_APP},
        ),
        runtime_class,
    )
    try:
        cluster.wait("the window probe to finish", lambda: "reached" in _log(cluster, name), POD_TIMEOUT)
        reached = int(_log(cluster, name).split()[-1])
        assert reached > 0, "the unproven pod never reached the port: this test could not see a window"
    finally:
        _delete(cluster, name)


def _decoy_prints(ip: str, connection: dict[str, Any], marker: str) -> None:
    kc = BlockingKernelClient()
    kc.load_connection_info(cast(KernelConnectionInfo, {**connection, "ip": ip}))
    kc.start_channels(hb=False)
    try:
        kc.wait_for_ready(timeout=POD_TIMEOUT)
        kc.execute_interactive(f"print({marker!r})", timeout=60)
    finally:
        kc.stop_channels()


@contextmanager
def _sniffing(ip: str) -> Iterator[zmq.Socket[bytes]]:
    """A SUB on a kernel's IOPub port without CURVE keys, from the host (which the policy admits),
    its TCP connection made before the block runs."""
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    events = sub.get_monitor_socket(zmq.EVENT_CONNECTED)
    sub.connect(f"tcp://{ip}:5556")
    try:
        assert events.poll(30_000), f"no TCP connection to {ip}:5556"
        yield sub
    finally:
        sub.disable_monitor()
        events.close(linger=0)
        sub.close(linger=0)
        context.term()


def _heard(sub: zmq.Socket[bytes], marker: str, wait: float = 5) -> bool:
    deadline = time.monotonic() + wait
    while sub.poll(max(0, int((deadline - time.monotonic()) * 1000))):
        if marker.encode() in b"".join(sub.recv_multipart()):
            return True
    return False


def test_an_attacker_pod_reads_no_sandbox_kernel_but_a_decoy_one(
    cluster: Cluster, k8s_api: Any, runtime_class: str | None
) -> None:
    prefix = cluster.gateway_ip.rsplit(".", 1)[0] + "."
    attacker = _start(
        cluster,
        _restricted(
            f"attacker-{secrets.token_hex(3)}", [PYTHON, "-c", ATTACKER, prefix], {"role": "attacker"}
        ),
        runtime_class,
    )
    secret, decoy_marker = f"SECRET-{secrets.token_hex(6)}", f"DECOY-{secrets.token_hex(6)}"
    # no CurveZMQ keys: a kernel that only signs its messages, as every sandbox's did before
    connection = {k: v for k, v in new_connection().items() if not k.startswith("curve_")}
    decoy = _restricted(
        f"decoy-{secrets.token_hex(3)}",
        ["sh", "-c", DECOY],
        {"role": "decoy"},
        {"HOME": "/tmp", "CONNECTION": json.dumps(connection)},
    )
    decoy_name = _start(cluster, decoy, runtime_class)
    try:
        cluster.wait(
            "the attacker to subscribe", lambda: "subscribed" in _log(cluster, attacker), POD_TIMEOUT
        )
        # Sandboxes born after the attacker: cold ones, and warm ones claimed by new threads.
        for settings in ({}, {"warm_pool_size": 1}):
            client = k8s_api(**settings)
            for n in range(2):
                thread = create_thread(client, f"leak-{len(settings)}-{n}")
                assert stdout(run(client, thread, f"print({secret!r})")) == secret + "\n"
        # Past the policy (from the host), CurveZMQ still refuses a peer without the keys.
        pod_ip = str(client.runtime.manager._live[thread].info.pod_ip)
        with _sniffing(pod_ip) as sub:
            assert stdout(run(client, thread, f"print({secret!r})")) == secret + "\n"
            assert not _heard(sub, secret)
        cluster.wait("the decoy kernel's pod", lambda: bool(_phase(cluster, decoy_name).pod_ip), POD_TIMEOUT)
        decoy_ip = str(_phase(cluster, decoy_name).pod_ip)
        with _sniffing(decoy_ip) as sub:
            _decoy_prints(decoy_ip, connection, decoy_marker)
            assert _heard(sub, decoy_marker)  # the same sniffer reads a kernel without CURVE
        cluster.wait("the attacker to read the decoy", lambda: decoy_marker in _log(cluster, attacker), 30)
        assert secret not in _log(cluster, attacker)
    finally:
        _delete(cluster, attacker)
        _delete(cluster, decoy_name)
