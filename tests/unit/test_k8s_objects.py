"""The sandbox pod, Secret and NetworkPolicy manifests, field by field (no cluster needed)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import zmq
from pydantic import ValidationError

from controller.config import Settings
from controller.k8s.connection import KERNEL_PORTS, for_pod, new_connection
from controller.k8s.names import (
    LAST_ACTIVE_ANNOTATION,
    all_sandboxes_selector,
    object_name,
    thread_selector,
)
from controller.k8s.objects import (
    PodConfig,
    default_deny_policy,
    ip_peer,
    last_active_patch,
    profile_hash,
    sandbox_network_policy,
    sandbox_pod,
    sandbox_secret,
    secret_owner_patch,
    warm_pod,
)

TID = "api-abcdefghijklmnop"


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "backend": "kubernetes",
        "store": "minio",
        "minio_endpoint": "10.0.0.5:9000",
        "minio_access_key": "ak",
        "minio_secret_key": "sk",
        "sandbox_namespace": "sbx",
        "sandbox_image": "localhost/threadbox-sandbox:dev",
    }
    return Settings(**{**base, **overrides})


def pod(**overrides: Any) -> dict[str, Any]:
    return sandbox_pod(TID, PodConfig.from_settings(settings(**overrides)), now=1700000000.5)


def container(p: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = p["spec"]["containers"]
    [c] = containers
    return c


def test_pod_identity_labels_and_last_active() -> None:
    p = pod()
    assert p["metadata"]["name"] == object_name(TID) == f"tb-{TID}"
    assert p["metadata"]["namespace"] == "sbx"
    assert p["metadata"]["labels"] == {
        "app.kubernetes.io/name": "threadbox-sandbox",
        "app.kubernetes.io/managed-by": "threadbox",
        "threadbox.dev/thread": TID,
    }
    assert p["metadata"]["annotations"] == {LAST_ACTIVE_ANNOTATION: "1700000000.500"}
    # Both selectors the backend lists with match these labels.
    labels = p["metadata"]["labels"]
    for selector in (all_sandboxes_selector(), thread_selector(TID)):
        assert all(labels[k] == v for k, v in (part.split("=") for part in selector.split(",")))


def test_pod_security_context() -> None:
    spec = pod()["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
        "sysctls": [{"name": "net.ipv4.ping_group_range", "value": "1 0"}],  # no ICMP sockets
    }
    sc = container(pod())["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 1000
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not any(k in spec for k in ("hostNetwork", "hostPID", "hostIPC", "serviceAccountName"))


def test_pod_resources_deadline_grace_and_runtime_class() -> None:
    p = pod(
        sandbox_cpu_request="100m",
        sandbox_cpu_limit="2",
        sandbox_memory_request="128Mi",
        sandbox_memory_limit="2Gi",
        active_deadline_seconds=3600,
    )
    assert container(p)["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "32Mi"},
        "limits": {"cpu": "2", "memory": "2Gi", "ephemeral-storage": "256Mi"},
    }
    assert p["spec"]["activeDeadlineSeconds"] == 3600
    assert p["spec"]["terminationGracePeriodSeconds"] == 30
    assert "runtimeClassName" not in p["spec"]
    assert pod(runtime_class_name="gvisor")["spec"]["runtimeClassName"] == "gvisor"


@pytest.mark.parametrize(
    ("endpoint", "dns"),
    [("10.0.0.5:9000", False), ("[fd00::5]:9000", False), ("minio.store.svc:9000", True)],
)
def test_a_sandbox_that_reaches_storage_by_ip_has_no_resolver(endpoint: str, dns: bool) -> None:
    spec = pod(minio_endpoint=endpoint)["spec"]
    if dns:
        assert "dnsPolicy" not in spec and "dnsConfig" not in spec
    else:
        assert spec["dnsPolicy"] == "None"
        assert spec["dnsConfig"] == {"nameservers": ["127.0.0.1"]}
    # the endpoint the sandbox uses decides, not the controller's
    spec = pod(minio_endpoint="minio.store.svc:9000", sandbox_minio_endpoint="10.1.2.3:9000")["spec"]
    assert spec["dnsPolicy"] == "None"


def test_default_deny_selects_every_sandbox_and_allows_nothing() -> None:
    policy = default_deny_policy("sbx")
    assert policy["metadata"]["name"] == "threadbox-default-deny"
    assert policy["spec"] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "threadbox-sandbox"}},
        "policyTypes": ["Ingress", "Egress"],
    }
    assert pod()["metadata"]["labels"].items() >= policy["spec"]["podSelector"]["matchLabels"].items()


def test_pod_image_probe_and_ports() -> None:
    c = container(pod(sandbox_image="localhost/other:1"))
    assert c["name"] == "sandbox"
    assert c["image"] == "localhost/other:1"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8888}
    assert sorted(p["containerPort"] for p in c["ports"]) == [5555, 5556, 5557, 5558, 5559, 8888]


PLACEMENT_ENV = {
    "THREADBOX_SANDBOX_NODE_SELECTOR": '{"pool": "sandboxes"}',
    "THREADBOX_SANDBOX_TOLERATIONS": '[{"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}]',
    "THREADBOX_SANDBOX_AFFINITY": '{"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": '
    '[{"weight": 1, "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}}]}}',
    "THREADBOX_SANDBOX_TOPOLOGY_SPREAD": '[{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", '
    '"whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "threadbox-sandbox"}}}]',
    "THREADBOX_SANDBOX_PRIORITY_CLASS_NAME": "sandboxes",
    "THREADBOX_SANDBOX_IMAGE_PULL_SECRETS": '[{"name": "registry"}]',
    "THREADBOX_SANDBOX_IMAGE_PULL_POLICY": "Always",
    "THREADBOX_SANDBOX_EXTRA_LABELS": '{"team": "data", "app.kubernetes.io/name": "not-threadbox"}',
    "THREADBOX_SANDBOX_EXTRA_ANNOTATIONS": '{"cost-center": "42", "threadbox.dev/last-active": "0"}',
}


def test_placement_settings_from_the_environment_reach_the_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PLACEMENT_ENV.items():
        monkeypatch.setenv(name, value)
    p = pod()
    spec = p["spec"]
    assert spec["nodeSelector"] == {"pool": "sandboxes"}
    assert spec["tolerations"] == [{"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}]
    [term] = spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["preference"]["matchExpressions"] == [{"key": "ssd", "operator": "Exists"}]
    [spread] = spec["topologySpreadConstraints"]
    assert (spread["maxSkew"], spread["topologyKey"]) == (1, "kubernetes.io/hostname")
    assert spec["priorityClassName"] == "sandboxes"
    assert spec["imagePullSecrets"] == [{"name": "registry"}]
    assert container(p)["imagePullPolicy"] == "Always"
    # The platform's metadata is added; threadbox's own labels and annotation keep their values.
    assert p["metadata"]["labels"]["team"] == "data"
    assert p["metadata"]["labels"]["app.kubernetes.io/name"] == "threadbox-sandbox"
    assert p["metadata"]["annotations"] == {"cost-center": "42", LAST_ACTIVE_ANNOTATION: "1700000000.500"}


def test_unset_placement_leaves_the_fields_to_the_cluster_defaults() -> None:
    spec = pod()["spec"]
    for field in (
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "priorityClassName",
        "imagePullSecrets",
    ):
        assert field not in spec, field


def test_a_warm_pod_is_placed_and_its_profile_names_the_placement() -> None:
    placed = PodConfig.from_settings(settings(sandbox_node_selector={"pool": "sandboxes"}))
    assert warm_pod("tb-warm-1", placed, now=0)["spec"]["nodeSelector"] == {"pool": "sandboxes"}
    # A warm pod placed elsewhere is never handed out after the placement changes.
    assert profile_hash(placed) != profile_hash(PodConfig.from_settings(settings()))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("sandbox_image_pull_policy", "Sometimes"),
        ("sandbox_image_pull_secrets", [{"secret": "registry"}]),
        ("sandbox_node_selector", {"pool": 1}),
    ],
)
def test_malformed_placement_is_refused(name: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=name):
        settings(**{name: value})


def test_pod_volumes_root_is_read_only_and_writable_dirs_are_bounded_empty_dirs() -> None:
    p = pod(workspace_size_limit="3Gi")
    volumes = {v["name"]: v for v in p["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in container(p)["volumeMounts"]}
    assert set(mounts) == {"/var/run/threadbox", "/workspace", "/tmp", "/home/sandbox"}
    assert mounts["/var/run/threadbox"]["readOnly"] is True
    assert volumes["secrets"]["secret"] == {"secretName": f"tb-{TID}", "defaultMode": 0o440}
    # tmpfs, so a write past the size fails at once (a disk emptyDir is only evicted later)
    assert volumes["workspace"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "3Gi"}
    for name in ("tmp", "home"):
        assert volumes[name]["emptyDir"] == {"medium": "Memory", "sizeLimit": "256Mi"}
    for path in ("/workspace", "/tmp", "/home/sandbox"):
        assert not mounts[path].get("readOnly")
    assert all(set(v) == {"name", "secret"} or set(v) == {"name", "emptyDir"} for v in volumes.values())


def test_pod_env_is_the_contract_and_nothing_of_the_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADBOX_SLACK_BOT_TOKEN", "xoxb-secret")
    env = {e["name"]: e["value"] for e in container(pod(max_file_bytes=7, file_ttl_days=1.5))["env"]}
    assert env == {
        "THREADBOX_THREAD_ID": TID,
        "THREADBOX_SECRETS_DIR": "/var/run/threadbox",
        "THREADBOX_WORKSPACE": "/workspace",
        "THREADBOX_MAX_FILE_BYTES": "7",
        "THREADBOX_THREAD_MAX_FILES": "200",
        "THREADBOX_THREAD_MAX_BYTES": str(500 * 2**20),
        "THREADBOX_FILE_TTL_DAYS": "1.5",
        "THREADBOX_MAX_OUTPUT_BYTES": str(4 * 2**20),
        "THREADBOX_POLICY_CHECK_SECONDS": "30",
        "THREADBOX_STATE_MAX_BYTES": str(256 * 2**20),
    }
    assert "envFrom" not in container(pod())
    kept_not = {e["name"] for e in container(pod(keep_state=False))["env"]}
    assert "THREADBOX_STATE_MAX_BYTES" not in kept_not


def test_secret_holds_connection_and_storage_and_gets_its_owner_later() -> None:
    conn = new_connection()
    storage = {"endpoint": "10.0.0.5:9000", "access_key": "tmp", "session_token": "t"}
    secret = sandbox_secret(TID, "sbx", conn, storage)
    assert secret["metadata"]["name"] == f"tb-{TID}" and secret["metadata"]["namespace"] == "sbx"
    assert secret["metadata"]["labels"]["threadbox.dev/thread"] == TID
    assert "ownerReferences" not in secret["metadata"]
    assert json.loads(secret["stringData"]["connection.json"]) == conn
    assert json.loads(secret["stringData"]["storage.json"]) == storage
    patch = secret_owner_patch(f"tb-{TID}", "uid-1")
    assert patch == {
        "metadata": {
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": f"tb-{TID}",
                    "uid": "uid-1",
                    "blockOwnerDeletion": False,
                }
            ]
        }
    }


def test_connection_info_fixed_ports_random_key_and_pod_ip() -> None:
    a, b = new_connection(), new_connection()
    assert a["key"] != b["key"] and len(a["key"]) == 64
    assert a["ip"] == "0.0.0.0" and a["transport"] == "tcp" and a["signature_scheme"] == "hmac-sha256"
    assert {k: a[k] for k in KERNEL_PORTS} == {
        "shell_port": 5555,
        "iopub_port": 5556,
        "stdin_port": 5557,
        "control_port": 5558,
        "hb_port": 5559,
    }
    dial = for_pod(a, "10.244.0.7")
    assert dial["ip"] == "10.244.0.7" and dial["key"] == a["key"] and a["ip"] == "0.0.0.0"
    # a CurveZMQ keypair of its own (z85, 40 characters each) for every sandbox
    assert a["curve_publickey"] != b["curve_publickey"] and len(a["curve_secretkey"]) == 40
    assert zmq.curve_public(a["curve_secretkey"].encode()) == a["curve_publickey"].encode()


def test_last_active_patch() -> None:
    assert last_active_patch(12.25) == {"metadata": {"annotations": {LAST_ACTIVE_ANNOTATION: "12.250"}}}


def test_network_policy_selects_sandboxes_and_limits_both_directions() -> None:
    policy = sandbox_network_policy(
        "sbx", ["10.244.0.1/32"], (ip_peer("192.0.2.2"), 9000), ["203.0.113.0/24"]
    )
    assert policy["kind"] == "NetworkPolicy" and policy["metadata"]["namespace"] == "sbx"
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "threadbox-sandbox"}}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    [ingress] = spec["ingress"]
    assert ingress["from"] == [
        {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "threadbox-controller"}},
        },
        {"ipBlock": {"cidr": "10.244.0.1/32"}},
    ]
    assert sorted(p["port"] for p in ingress["ports"]) == [5555, 5556, 5557, 5558, 5559, 8888]
    dns, storage, allowed = spec["egress"]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    assert storage == {
        "to": [{"ipBlock": {"cidr": "192.0.2.2/32"}}],
        "ports": [{"protocol": "TCP", "port": 9000}],
    }
    assert allowed == {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]}


def test_network_policy_without_allowlist_allows_only_dns_and_storage() -> None:
    spec = sandbox_network_policy("sbx", [], (ip_peer("fd00::5"), 9000), [])["spec"]
    assert len(spec["egress"]) == 2
    assert spec["egress"][1]["to"] == [{"ipBlock": {"cidr": "fd00::5/128"}}]
    # no controller CIDRs: only controller pods may connect
    assert len(spec["ingress"][0]["from"]) == 1


def test_in_cluster_minio_is_reached_by_a_pod_selector_peer() -> None:
    peer = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "minio"}}}
    spec = sandbox_network_policy("sbx", [], (peer, 9000), [])["spec"]
    assert spec["egress"][1] == {"to": [peer], "ports": [{"protocol": "TCP", "port": 9000}]}


def test_only_a_warm_pod_is_told_the_modules_to_preimport() -> None:
    cfg = PodConfig.from_settings(settings(warm_preimport="numpy, pandas"))
    env = {e["name"]: e["value"] for e in container(warm_pod("tb-warm-1", cfg, now=0))["env"]}
    assert env["THREADBOX_PREIMPORT"] == "numpy,pandas"
    assert "THREADBOX_PREIMPORT" not in {e["name"] for e in container(pod(warm_preimport="numpy"))["env"]}
    # A warm pod of other preimports is another pool's.
    assert profile_hash(cfg) != profile_hash(PodConfig.from_settings(settings()))
    with pytest.raises(ValidationError, match="not module names: 'os; import x'"):
        settings(warm_preimport="numpy,os; import x")
