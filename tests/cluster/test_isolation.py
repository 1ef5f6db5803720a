"""Isolation probes run as user code inside a real sandbox pod: every one must fail.

Each probe has a positive control, so a failure means "blocked", not "nothing there":
the thread's own storage prefix works, the other sandbox's kernel answers the controller,
the API server answers the host, and the host port accepts connections from the host.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.probes import pod_s3_script
from tests.support.client import create_thread, run, stdout

pytestmark = pytest.mark.cluster

CONTRACT_ENV = {
    "THREADBOX_THREAD_ID",
    "THREADBOX_SECRETS_DIR",
    "THREADBOX_WORKSPACE",
    "THREADBOX_MAX_FILE_BYTES",
    "THREADBOX_THREAD_MAX_FILES",
    "THREADBOX_THREAD_MAX_BYTES",
    "THREADBOX_FILE_TTL_DAYS",
}

PROBES = pod_s3_script(
    r"""
import socket, ssl, urllib.request
from minio import MinioAdmin
from minio.credentials.providers import StaticProvider

def connect(host, port):
    return attempt(lambda: socket.create_connection((host, port), timeout=3).close())

other = "threads/OTHER/files/"
res = {
    "own_put": attempt(lambda: s3.put_object(st["bucket"], st["prefix"] + "probe.txt", io.BytesIO(b"x"), 1)),
    "own_list": attempt(lambda: list(s3.list_objects(st["bucket"], prefix=st["prefix"]))),
    "other_list": attempt(lambda: list(s3.list_objects(st["bucket"], prefix=other))),
    "other_get": attempt(lambda: s3.get_object(st["bucket"], other + "secret.txt").read()),
    "other_put": attempt(lambda: s3.put_object(st["bucket"], other + "evil.txt", io.BytesIO(b"x"), 1)),
    "bucket_list": attempt(lambda: list(s3.list_objects(st["bucket"], prefix="threads/"))),
    # GHSA-jjjj-jwhf-8rgr: a scoped credential minting an unscoped one for itself
    "mint": attempt(lambda: MinioAdmin(endpoint=st["endpoint"], credentials=StaticProvider(
        st["access_key"], st["secret_key"], st["session_token"]), secure=st["secure"]
    ).add_service_account(access_key="escapee" + os.urandom(4).hex(), secret_key=os.urandom(20).hex())),
    "api_dns": attempt(lambda: urllib.request.urlopen(
        "https://kubernetes.default.svc/version", timeout=3, context=ssl._create_unverified_context())),
    "api_ip": connect("10.96.0.1", 443),
    "peer": {str(p): connect("PEER_IP", p) for p in (5555, 5556, 5557, 5558, 5559, 8888)},
    "node": connect("NODE_IP", NODE_PORT),
    "sa_token": os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token"),
    "env": dict(os.environ),
    "proc_environ": {},
}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        res["proc_environ"][pid] = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")
    except OSError:
        pass
print(json.dumps(res))
"""
)


def test_sandbox_cannot_reach_other_threads_the_api_other_pods_or_the_host(
    cluster: Cluster, k8s_api: Any, node_listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-probe-controller-secret")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-probe-controller-secret")
    client = k8s_api(llm_api_key="sk-probe-setting-secret", exec_timeout=120)
    a, b = create_thread(client, "attacker"), create_thread(client, "victim")
    assert stdout(run(client, b, "open('secret.txt', 'w').write('victim data'); print('ok')")) == "ok\n"
    assert client.runtime.store.read_file(b, "secret.txt") == b"victim data"  # it exists to be stolen
    peer_ip = str(client.runtime.manager._live[b].info.pod_ip)
    with socket.create_connection((peer_ip, 8888), timeout=3):
        pass  # the controller (host) reaches the victim's agent: the probe below is meaningful
    with socket.create_connection((cluster.node_ip, node_listener), timeout=3):
        pass
    code = (
        PROBES.replace("OTHER", b)
        .replace("PEER_IP", peer_ip)
        .replace("NODE_IP", cluster.node_ip)
        .replace("NODE_PORT", str(node_listener))
    )
    events = run(client, a, code)
    assert events[-1]["status"] == "ok", events
    res = json.loads(stdout(events))
    print({k: v for k, v in res.items() if k not in ("env", "proc_environ")})

    assert res["own_put"] == "ok" and res["own_list"] == "ok"  # its own credentials work...
    for probe in ("other_list", "other_get", "other_put", "bucket_list"):
        assert res[probe] == "S3Error:AccessDenied", (probe, res[probe])  # ...for its own prefix only
    assert res["mint"].startswith("MinioAdminException"), res["mint"]  # no broader credential
    assert client.runtime.store.read_file(b, "secret.txt") == b"victim data"
    assert "evil.txt" not in [f.name for f in client.runtime.store.list_files(b)]

    assert res["api_dns"] != "ok" and res["api_ip"] != "ok", (res["api_dns"], res["api_ip"])
    assert all(result != "ok" for result in res["peer"].values()), res["peer"]
    assert res["node"] != "ok"

    assert res["sa_token"] is False
    assert {k for k in res["env"] if k.startswith("THREADBOX_")} <= CONTRACT_ENV
    everything = json.dumps([res["env"], res["proc_environ"]])
    assert res["proc_environ"]  # it could read its own processes' environments
    for secret in (
        "sk-probe-controller-secret",
        "xoxb-probe-controller-secret",
        "sk-probe-setting-secret",
        client.runtime.settings.minio_secret_key.get_secret_value(),
    ):
        assert secret not in everything
    for name in ("OPENAI_API_KEY", "SLACK_BOT_TOKEN", "THREADBOX_MINIO", "THREADBOX_LLM", "THREADBOX_SLACK"):
        assert name not in everything, name
    # The kubelet always injects the API's address (KUBERNETES_SERVICE_HOST, even with service
    # links off); knowing it is harmless, reaching it is not possible (api_ip above).
    assert {k for k in res["env"] if k.startswith("KUBERNETES_")} <= {
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_SERVICE_PORT",
        "KUBERNETES_SERVICE_PORT_HTTPS",
        "KUBERNETES_PORT",
        "KUBERNETES_PORT_443_TCP",
        "KUBERNETES_PORT_443_TCP_PROTO",
        "KUBERNETES_PORT_443_TCP_PORT",
        "KUBERNETES_PORT_443_TCP_ADDR",
    }, sorted(res["env"])
