"""Issue 5 acceptance: the Helm chart installed into the real cluster, with the controller image
built here (hack/build-controller-image.sh) and the session's sandbox image.

One release per sandbox runtime (runc, then gVisor through the chart's
`sandbox.runtimeClassName`), used in order: install, helm test, RBAC, a Slack turn through the
in-cluster controller, a promtool check of its /metrics, a real Prometheus that finds it with the
chart's scrape job, upgrade (a running thread survives),
uninstall (the pre-delete hook leaves nothing). Sandboxes run in a separate namespace the
chart creates. MinIO and the fake Slack run on the host, bound to the node IP.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client

from devkit.client import bearer
from devkit.fake_slack import BOT_TOKEN, FakeSlack, serve_fake_slack
from devkit.minio import MinioServer
from devkit.slack_events import SIGNING_SECRET, SlackSender, code
from tests.cluster.conftest import ROOT, Cluster, _run_script, _skip
from tests.support.client import create_thread, run, stdout
from tests.support.poll import wait_until
from tests.support.prometheus import ALERTS, SCRAPE, running
from tests.unit.test_chart_static import required_permissions
from tests.unit.test_prometheus_rules import WANTED

pytestmark = pytest.mark.cluster

CHART = ROOT / "charts" / "threadbox"
SANDBOX_REPO = "localhost/threadbox-sandbox"
UPGRADE_TAG = "chart-upgrade"  # the session's sandbox image under a second name
ADMIN_TOKEN = "tbx_" + secrets.token_urlsafe(24)  # auth.adminToken of the release
PULL_SECRET = "tb-registry"  # made in the release namespace, and in the sandbox one once the chart made it
TOLERATION = {"key": "threadbox.dev/sandboxes", "operator": "Exists", "effect": "NoSchedule"}
TEAM_LABEL = {"threadbox.dev/team": "platform"}
MONITORING_CRDS = Path(__file__).with_name("monitoring-crds.yaml")
MONITOR_LABELS = {"release": "prometheus"}  # what a Prometheus' serviceMonitorSelector would match


def tool(cluster: Cluster, *args: str, check: bool = True, stdin: str | None = None) -> str:
    """helm or kubectl from the cluster's bin dir, against its kubeconfig."""
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    path = cluster.kubeconfig.parent / "bin" / args[0]
    proc = subprocess.run(
        [str(path), *args[1:]], capture_output=True, text=True, env=env, input=stdin, timeout=600
    )
    if check and proc.returncode:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


def ctr_images(cluster: Cluster) -> list[str]:
    return [str(cluster.kubeconfig.parent / "bin" / "ctr"), "-n", "k8s.io", "images"]


@dataclass
class Release:
    cluster: Cluster
    name: str
    namespace: str
    sandbox_namespace: str
    values: Path
    slack: FakeSlack
    minio: MinioServer
    bucket: str
    service_account: str
    runtime_class: str | None
    node: str
    priority_class: str

    def helm(self, *args: str, check: bool = True) -> str:
        return tool(self.cluster, "helm", *args, "-n", self.namespace, check=check)

    def kubectl(self, *args: str, check: bool = True) -> str:
        return tool(self.cluster, "kubectl", *args, check=check)

    def url(self, service: str = "threadbox", port: int = 8600) -> str:
        svc = self.cluster.core.read_namespaced_service(f"{self.name}-{service}", self.namespace)
        return f"http://{svc.spec.cluster_ip}:{port}"  # the host reaches ClusterIPs (kube-proxy)

    def chat_url(self) -> str:
        return self.url("threadbox-chat", 8601)

    def api(self, read: float = 30) -> httpx.Client:
        """A client of the API Service with the release's admin token."""
        return httpx.Client(
            base_url=self.url(), headers=bearer(ADMIN_TOKEN), timeout=httpx.Timeout(10, read=read)
        )

    def wait_serving(self, timeout: float = 60) -> None:
        """Until the API Service answers /readyz: after a rollout, kube-proxy takes a moment to
        point the Service at the new pod, and meanwhile connections are refused."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                status = httpx.get(self.url() + "/readyz", timeout=5).status_code
            except httpx.TransportError as exc:
                status = 0
                if time.monotonic() > deadline:
                    raise AssertionError(f"the API Service did not answer within {timeout:g}s") from exc
            if status == 200:
                return
            assert time.monotonic() < deadline, f"/readyz answered {status} for {timeout:g}s"
            time.sleep(0.5)  # polling: a Service gives no signal when its endpoints are programmed

    def controller_pods(self) -> list[str]:
        """Names of the controller pods that are not on their way out."""
        pods = self.cluster.core.list_namespaced_pod(
            self.namespace, label_selector="app.kubernetes.io/component=controller"
        ).items
        return [p.metadata.name for p in pods if not p.metadata.deletion_timestamp]

    def sandbox_pods(self, thread_id: str | None = None) -> list[Any]:
        selector = "app.kubernetes.io/name=threadbox-sandbox"
        if thread_id:
            selector += f",threadbox.dev/thread={thread_id}"
        return list(
            self.cluster.core.list_namespaced_pod(self.sandbox_namespace, label_selector=selector).items
        )


def _placement(node: str, priority_class: str) -> dict[str, Any]:
    """Every placement value, pinning pods to the one node: a nodeSelector that matches it, a
    toleration, a required node affinity, a spread constraint and a priority class."""
    hostname = "kubernetes.io/hostname"
    return {
        "nodeSelector": {hostname: node},
        "tolerations": [TOLERATION],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}
                            ]
                        }
                    ]
                }
            }
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": hostname,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": TEAM_LABEL},
            }
        ],
        "priorityClassName": priority_class,
    }


def _values(
    cluster: Cluster,
    controller_image: str,
    minio: MinioServer,
    bucket: str,
    fake_url: str,
    runtime_class: str | None,
    placement: dict[str, Any],
) -> dict[str, Any]:
    repo, tag = controller_image.rsplit(":", 1)
    sandbox_repo, sandbox_tag = cluster.image.rsplit(":", 1)
    return {
        # The images built here, never the chart's registry defaults.
        "image": {"repository": repo, "tag": tag, "pullPolicy": "Never"},
        "imagePullSecrets": [{"name": PULL_SECRET}],
        "serviceMonitor": {"enabled": True, "interval": "15s", "labels": MONITOR_LABELS},
        "prometheusRule": {"enabled": True, "labels": MONITOR_LABELS},
        "controller": {
            "idleTimeout": 3600,
            "startTimeout": 120,
            "resources": {"requests": {"cpu": "50m"}},
            "podLabels": TEAM_LABEL,
            **placement,
        },
        "sandbox": {
            "createNamespace": True,
            "runtimeClassName": runtime_class or "",
            "image": {"repository": sandbox_repo, "tag": sandbox_tag, "pullPolicy": "Never"},
            "imagePullSecrets": [{"name": PULL_SECRET}],
            "podLabels": TEAM_LABEL,
            "podAnnotations": {"threadbox.dev/cost-center": "ci"},
            "prePuller": {"enabled": True},
            **placement,
            "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "1", "memory": "1Gi"},
            },
        },
        "minio": {
            "endpoint": minio.endpoint,
            "bucket": bucket,
            "accessKey": minio.access_key,
            "secretKey": minio.secret_key,
        },
        "slack": {"mode": "http", "apiUrl": fake_url, "existingSecret": "slack-credentials"},
        "auth": {"adminToken": ADMIN_TOKEN},
        "extraEnv": [{"name": "THREADBOX_SLACK_UPDATE_INTERVAL", "value": "0.3"}],
    }


@pytest.fixture(scope="module")
def controller_image(cluster: Cluster) -> str:
    return (
        _run_script("hack/build-controller-image.sh", "controller-image", timeout=1800)
        .strip()
        .splitlines()[-1]
    )


@pytest.fixture(scope="module")
def monitoring_crds(cluster: Cluster) -> None:
    """The ServiceMonitor and PrometheusRule CRDs, where the cluster lacks them. They stay: a
    CRD's deletion deletes every object of its kind, so another session's release on the same
    cluster would lose its ServiceMonitor mid-test."""
    docs = list(yaml.safe_load_all(MONITORING_CRDS.read_text()))
    present = {n.split("/")[-1] for n in tool(cluster, "kubectl", "get", "crd", "-o", "name").split()}
    added = [d for d in docs if d["metadata"]["name"] not in present]
    if added:
        tool(cluster, "kubectl", "apply", "-f", "-", stdin=yaml.safe_dump_all(added))
        names = [f"crd/{d['metadata']['name']}" for d in added]
        tool(cluster, "kubectl", "wait", "--for=condition=Established", "--timeout=60s", *names)


@pytest.fixture(scope="module")
def release(
    cluster: Cluster,
    cluster_minio: MinioServer,
    controller_image: str,
    runtime_class: str | None,
    monitoring_crds: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    """The release under test, once per sandbox runtime (the chart's ``sandbox.runtimeClassName``)."""
    suffix = secrets.token_hex(3)
    ns, sandbox_ns, name = f"tb-chart-{suffix}", f"tb-chart-{suffix}-sb", "tb"
    bucket = cluster_minio.store().bucket
    values = tmp_path_factory.mktemp("chart") / "values.json"
    [node] = [n.metadata.name for n in cluster.core.list_node().items]
    scheduling = client.SchedulingV1Api(cluster.core.api_client)
    priority = f"tb-chart-{suffix}"
    with serve_fake_slack(host=cluster.node_ip) as fake:
        placement = _placement(node, priority)
        values.write_text(
            json.dumps(
                _values(cluster, controller_image, cluster_minio, bucket, fake.url, runtime_class, placement)
            )
        )
        cluster.core.create_namespace({"metadata": {"name": ns}})
        scheduling.create_priority_class(
            client.V1PriorityClass(metadata=client.V1ObjectMeta(name=priority), value=100)
        )
        rel = Release(
            cluster,
            name,
            ns,
            sandbox_ns,
            values,
            fake,
            cluster_minio,
            bucket,
            f"{name}-threadbox",
            runtime_class,
            node,
            priority,
        )
        try:
            rel.kubectl(
                "-n", ns, "create", "secret", "generic", "slack-credentials",
                f"--from-literal=botToken={BOT_TOKEN}", f"--from-literal=signingSecret={SIGNING_SECRET}",
            )  # fmt: skip
            _pull_secret(rel, ns)
            rel.helm(
                "install", name, str(CHART), "-f", str(values),
                "--set", f"sandbox.namespace={sandbox_ns}", "--wait", "--timeout", "4m",
            )  # fmt: skip
            _pull_secret(rel, sandbox_ns)
            yield rel
        finally:
            rel.helm("uninstall", name, "--wait", "--timeout", "4m", check=False)
            for gone in (ns, sandbox_ns):
                rel.kubectl("delete", "namespace", gone, "--ignore-not-found", "--wait=false", check=False)
            scheduling.delete_priority_class(priority)
            subprocess.run([*ctr_images(cluster), "rm", f"{SANDBOX_REPO}:{UPGRADE_TAG}"], capture_output=True)


def _pull_secret(rel: Release, namespace: str) -> None:
    rel.kubectl(
        "-n", namespace, "create", "secret", "docker-registry", PULL_SECRET,
        "--docker-server=registry.example.com", "--docker-username=ci", "--docker-password=unused",
    )  # fmt: skip


# -- static checks of the chart against the API server ---------------------------------------


def test_lint_passes_and_the_schema_rejects_a_typo(cluster: Cluster, tmp_path: Path) -> None:
    ok = tool(cluster, "helm", "lint", str(CHART), "--strict", "--set", "minio.endpoint=minio:9000")
    assert "0 chart(s) failed" in ok
    for bad, complaint in (
        ("sandbox.imagee.tag=x", "imagee"),  # a misspelt key
        ("slack.mode=sockets", "slack/mode"),  # a value outside the enum
        ("sandbox.warmPool.size=-1", "warmPool/size"),
    ):
        out = tool(
            cluster, "helm", "lint", str(CHART), "--set", "minio.endpoint=m:9000", "--set", bad, check=False
        )
        assert "1 chart(s) failed" in out and complaint in out, (bad, out)
    # Without MinIO the chart refuses to render, naming the value.
    out = tool(cluster, "helm", "template", "x", str(CHART), check=False)
    assert "minio.endpoint is required" in out


def test_rendered_manifests_pass_server_side_validation(cluster: Cluster) -> None:
    ns = f"tb-chart-dry-{secrets.token_hex(3)}"
    for name in (ns, f"{ns}-sb"):  # the sandbox namespace is the chart's to create, but not in a dry run
        cluster.core.create_namespace({"metadata": {"name": name}})
    try:
        rendered = tool(
            cluster, "helm", "template", "dry", str(CHART), "-n", ns,
            "--set", "minio.endpoint=minio.minio.svc:9000,minio.accessKey=a,minio.secretKey=b",
            "--set", "slack.mode=http,slack.botToken=xoxb-1,slack.signingSecret=s",
            "--set", "podDisruptionBudget.enabled=true,networkPolicy.enabled=true,controller.replicas=2",
            "--set", "ingress.enabled=true,ingress.host=chat.example.com,sandbox.createNamespace=false",
            "--set", f"sandbox.namespace={ns}-sb",
        )  # fmt: skip
        out = tool(cluster, "kubectl", "apply", "--dry-run=server", "-f", "-", stdin=rendered)
        for kind in (
            "daemonset.apps/dry-threadbox-prepuller",
            "ingress.networking",
            "service/dry-threadbox-chat",
            "deployment.apps",
            "role.rbac",
            "networkpolicy",
            "poddisruptionbudget",
            "job.batch",
            "pod/",
        ):
            assert f"{kind}" in out and "(server dry run)" in out, (kind, out)
    finally:
        for name in (ns, f"{ns}-sb"):
            cluster.core.delete_namespace(name)


def _render(cluster: Cluster, *sets: str, check: bool = True) -> list[dict[str, Any]]:
    args = [a for s in ("minio.endpoint=m:9000", *sets) for a in ("--set", s)]
    out = tool(cluster, "helm", "template", "r", str(CHART), "-n", "rel", *args, check=check)
    return [d for d in yaml.safe_load_all(out) if d]


def test_defaults_sandboxes_in_their_own_namespace_one_replica_no_budget_no_metadata_egress(
    cluster: Cluster,
) -> None:
    docs = _render(cluster)
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert ("PodDisruptionBudget", "r-threadbox") not in kinds  # one replica drains freely
    assert kinds[("Namespace", "rel-sandboxes")]  # its own, never the release's
    deployment = kinds[("Deployment", "r-threadbox")]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in deployment["containers"][0]["env"]}
    assert env["THREADBOX_SANDBOX_NAMESPACE"] == "rel-sandboxes"
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert deployment["containers"][0]["image"].endswith(f"threadbox-controller:{version}")
    assert env["THREADBOX_SANDBOX_IMAGE"].endswith(f"threadbox-sandbox:{version}")
    prepuller = kinds[("DaemonSet", "r-threadbox-prepuller")]
    assert prepuller["metadata"]["namespace"] == "rel-sandboxes"
    egress = kinds[("NetworkPolicy", "r-threadbox")]["spec"]["egress"]
    blocks = [peer["ipBlock"] for rule in egress for peer in rule.get("to", []) if "ipBlock" in peer]
    assert blocks and all("169.254.169.254/32" in b["except"] for b in blocks if b["cidr"] == "0.0.0.0/0")
    assert "PodDisruptionBudget" in {d["kind"] for d in _render(cluster, "controller.replicas=2")}
    out = tool(cluster, "helm", "template", "r", str(CHART), "-n", "rel", "--set", "minio.endpoint=m:9000",
               "--set", "sandbox.namespace=rel", check=False)  # fmt: skip
    assert "sandbox.namespace must differ from the release namespace" in out


def _monitored_services(docs: list[dict[str, Any]], monitor: dict[str, Any]) -> list[dict[str, Any]]:
    """The Services among ``docs`` that the ServiceMonitor's selector matches."""
    wanted = monitor["spec"]["selector"]["matchLabels"].items()
    return [d for d in docs if d["kind"] == "Service" and d["metadata"]["labels"].items() >= wanted]


def test_the_service_monitor_scrapes_the_api_port_and_the_rule_ships_every_alert(cluster: Cluster) -> None:
    docs = _render(cluster, "serviceMonitor.enabled=true", "prometheusRule.enabled=true",
                   "serviceMonitor.labels.release=prometheus", "serviceMonitor.interval=15s")  # fmt: skip
    [monitor] = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    [service] = _monitored_services(docs, monitor)  # the API's, not the chat Service
    assert service["metadata"]["name"] == "r-threadbox"
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "http", "path": "/metrics", "interval": "15s"}
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    [rule] = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    assert {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]} == WANTED
    assert not {"ServiceMonitor", "PrometheusRule"} & {d["kind"] for d in _render(cluster)}  # off by default


# -- the installed release ------------------------------------------------------------------


def test_install_brings_the_controller_to_ready_and_helm_test_passes(release: Release) -> None:
    status = release.kubectl(
        "-n", release.namespace, "rollout", "status", f"deployment/{release.service_account}"
    )
    assert "successfully rolled out" in status
    out = release.helm("test", release.name, "--timeout", "2m")
    assert "Phase:          Succeeded" in out, out
    [name] = release.controller_pods()
    pod = release.cluster.core.read_namespaced_pod(name, release.namespace)
    assert pod.metadata.labels["app.kubernetes.io/name"] == "threadbox-controller"
    container = pod.spec.containers[0]
    assert container.security_context.read_only_root_filesystem
    assert pod.spec.security_context.run_as_user == 10001
    assert httpx.get(release.url() + "/readyz", timeout=10).json()["backend"] == "kubernetes"
    # What the LLM is told is preinstalled comes with the image; uv does not.
    probe = (
        "import importlib.util; from controller.agent.prompt import preinstalled_libraries as p;"
        "print(','.join(p())); print(importlib.util.find_spec('uv'))"
    )
    libraries, uv = release.kubectl(
        "-n", release.namespace, "exec", name, "--", "python", "-c", probe
    ).split()
    assert {"numpy", "pandas", "matplotlib"} <= set(libraries.split(",")) and uv == "None"
    # Sandboxes are admitted under "restricted", and denied all traffic before the first exists.
    sandbox_ns = release.cluster.core.read_namespace(release.sandbox_namespace)
    assert sandbox_ns.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    deny = json.loads(
        release.kubectl(
            "-n", release.sandbox_namespace, "get", "networkpolicy", "threadbox-default-deny", "-o", "json"
        )
    )
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny["spec"]


def test_the_service_monitor_and_prometheus_rule_are_installed(release: Release) -> None:
    """Through the CRDs' structural schemas: a field the chart misnamed would be pruned here."""
    custom = client.CustomObjectsApi(release.cluster.core.api_client)

    def read(plural: str) -> dict[str, Any]:
        found = custom.get_namespaced_custom_object(
            "monitoring.coreos.com", "v1", release.namespace, plural, f"{release.name}-threadbox"
        )
        assert isinstance(found, dict)
        return found

    monitor, rule = read("servicemonitors"), read("prometheusrules")
    assert monitor["metadata"]["labels"].items() >= MONITOR_LABELS.items()
    selector = ",".join(f"{k}={v}" for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    services = release.cluster.core.list_namespaced_service(release.namespace, label_selector=selector).items
    assert [s.metadata.name for s in services] == [f"{release.name}-threadbox"]
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    assert "http" in {p.name for p in services[0].spec.ports}
    assert rule["metadata"]["labels"].items() >= MONITOR_LABELS.items()
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]  # every field kept
    assert {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]} == WANTED


def _can(release: Release, verb: str, resource: str, namespace: str | None, *extra: str) -> bool:
    """The API server's own authorizer (SubjectAccessReview), asked as the controller's ServiceAccount."""
    sa = f"system:serviceaccount:{release.namespace}:{release.service_account}"
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    out = release.kubectl("auth", "can-i", verb, resource, *where, *extra, f"--as={sa}", check=False).strip()
    assert out in ("yes", "no"), out
    return out == "yes"


def test_controller_service_account_has_least_privilege(release: Release) -> None:
    sb = release.sandbox_namespace
    needed = required_permissions()  # every API call of the backend code
    missing = [(g, r, v) for g, r, v in needed if not _can(release, v, f"{r}.{g}" if g else r, sb)]
    assert missing == []
    elsewhere = [release.namespace, release.cluster.namespace, "kube-system", "default"]
    granted = [
        (verb, resource, ns)
        for ns in elsewhere
        for verb, resource in (
            ("get", "secrets"),
            ("list", "secrets"),
            ("create", "pods"),
            ("delete", "pods"),
        )
        if _can(release, verb, resource, ns)
    ]
    assert granted == []
    assert not _can(release, "list", "secrets", None)  # no cluster-wide grant
    assert not _can(release, "create", "roles.rbac.authorization.k8s.io", sb)  # cannot widen itself
    assert not _can(release, "create", "pods", sb, "--subresource=exec")


def test_api_needs_a_token_and_the_chat_service_serves_only_chat_paths(release: Release) -> None:
    with release.api() as api, httpx.Client(base_url=release.chat_url(), timeout=30) as chat:
        assert httpx.get(release.url() + "/threads", timeout=10).status_code == 401
        assert api.get("/threads").status_code == 200  # control: the admin token works
        assert api.post("/slack/events", content=b"{}").status_code == 404, "no webhooks on the API Service"
        assert chat.post("/slack/events", content=b"{}").status_code == 401  # Slack's signature check
        for path in ("/threads", "/", "/metrics", "/readyz", "/docs", "/openapi.json"):
            assert chat.get(path, headers=bearer(ADMIN_TOKEN)).status_code == 404, path
            assert api.get(path).status_code == 200, path  # control: the API Service has them


def test_slack_mention_is_answered_by_a_sandbox_pod_of_the_in_cluster_controller(release: Release) -> None:
    with release.api() as api, httpx.Client(base_url=release.chat_url(), timeout=30) as chat:
        sent = SlackSender(api, chat=chat).mention(
            "C1", code("import math\nprint('answer', math.factorial(5) + 1)")
        )
    assert sent.response.status_code == 200, sent.response.text
    release.slack.wait_for(
        lambda: "answer 121" in release.slack.text_in_thread("C1", sent.ts), timeout=180, what="the reply"
    )
    replies = [m for m in release.slack.messages if m.get("bot_id")]
    assert replies and all(m["thread_ts"] == sent.ts for m in replies)
    [pod] = release.sandbox_pods()
    assert pod.status.phase == "Running"
    assert pod.spec.runtime_class_name == release.runtime_class


def _assert_placed(spec: Any, release: Release) -> None:
    """A pod spec (the client's model) with the release's placement, scheduled onto the node."""
    assert spec.node_selector == {"kubernetes.io/hostname": release.node}
    tolerations = [{"key": t.key, "operator": t.operator, "effect": t.effect} for t in spec.tolerations]
    assert TOLERATION in tolerations
    [term] = (
        spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
    )
    assert term.match_expressions[0].key == "kubernetes.io/os"
    [spread] = spec.topology_spread_constraints
    assert (spread.topology_key, spread.label_selector.match_labels) == ("kubernetes.io/hostname", TEAM_LABEL)
    assert spec.priority_class_name == release.priority_class and spec.priority == 100
    assert spec.node_name == release.node


def test_sandbox_and_controller_pods_land_where_the_values_place_them(release: Release) -> None:
    with release.api(read=180) as http:
        tid = create_thread(http, "placed")
        assert stdout(run(http, tid, "print('placed')")) == "placed\n"
    [pod] = release.sandbox_pods(tid)
    _assert_placed(pod.spec, release)
    scheduled = {c.type: c.status for c in pod.status.conditions}
    assert scheduled["PodScheduled"] == "True" and pod.status.phase == "Running"
    assert [s.name for s in pod.spec.image_pull_secrets] == [PULL_SECRET]
    assert pod.spec.containers[0].image_pull_policy == "Never"
    assert (
        pod.metadata.labels.items() >= {**TEAM_LABEL, "app.kubernetes.io/name": "threadbox-sandbox"}.items()
    )
    assert pod.metadata.annotations["threadbox.dev/cost-center"] == "ci"
    [controller] = release.controller_pods()
    controller_spec = release.cluster.core.read_namespaced_pod(controller, release.namespace).spec
    _assert_placed(controller_spec, release)
    assert [s.name for s in controller_spec.image_pull_secrets] == [PULL_SECRET]  # the top-level value


def test_the_pre_puller_keeps_the_sandbox_image_on_the_eligible_node(release: Release) -> None:
    [daemonset] = (
        client.AppsV1Api(release.cluster.core.api_client)
        .list_namespaced_daemon_set(
            release.sandbox_namespace, label_selector="app.kubernetes.io/name=threadbox-prepuller"
        )
        .items
    )
    status = daemonset.status
    assert status is not None and status.desired_number_scheduled == status.number_ready == 1
    [pod] = release.cluster.core.list_namespaced_pod(
        release.sandbox_namespace, label_selector="app.kubernetes.io/name=threadbox-prepuller"
    ).items
    assert pod.spec.node_name == release.node and pod.status.phase == "Running"
    assert pod.spec.node_selector == {"kubernetes.io/hostname": release.node}
    [container] = pod.spec.containers
    assert container.image == release.cluster.image and container.image_pull_policy == "Never"
    assert container.resources.requests == {"cpu": "1m", "memory": "8Mi"}
    assert container.security_context.read_only_root_filesystem
    assert [s.name for s in pod.spec.image_pull_secrets] == [PULL_SECRET]
    assert pod.spec.automount_service_account_token is False


CONTROLLER_PROBE = r"""
import json, socket
def connect(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "ok"
    except OSError as exc:
        return type(exc).__name__
print(json.dumps({f"{h}:{p}": connect(h, p) for h, p in TARGETS}))
"""


def test_a_sandbox_cannot_reach_the_controller_that_serves_it(release: Release) -> None:
    """The controller's API and chat ports, by Service IP, pod IP and DNS name, from user code."""
    pod_ip = release.cluster.core.read_namespaced_pod(
        release.controller_pods()[0], release.namespace
    ).status.pod_ip
    api_host, chat_host = (u.split("//")[1].split(":")[0] for u in (release.url(), release.chat_url()))
    dns_name = f"{release.name}-threadbox.{release.namespace}.svc.cluster.local"
    targets = [(api_host, 8600), (chat_host, 8601), (pod_ip, 8600), (pod_ip, 8601), (dns_name, 8600)]
    release.wait_serving()
    for host, port in targets[:-1]:  # positive control: each answers the host
        socket.create_connection((host, port), timeout=3).close()
    with release.api(read=180) as http:
        tid = create_thread(http, "controller-probe")
        events = run(http, tid, CONTROLLER_PROBE.replace("TARGETS", repr(targets)))
    assert events[-1]["status"] == "ok", json.dumps(events)
    res = json.loads(stdout(events))
    assert res and all(r != "ok" for r in res.values()), res
    assert res[f"{dns_name}:8600"] == "gaierror"  # no resolver: the name is not even looked up


def test_metrics_of_the_in_cluster_controller_pass_promtool(release: Release) -> None:
    proc = subprocess.run([str(ROOT / "hack" / "install-promtool.sh")], capture_output=True, text=True)
    if proc.returncode == 3:
        _skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr
    scrape = httpx.get(release.url() + "/metrics", timeout=10).text
    assert "threadbox_slack_events_total" in scrape and "threadbox_sandbox_start_seconds_bucket" in scrape
    check = subprocess.run(
        [proc.stdout.strip(), "check", "metrics"], input=scrape, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def _meta_label(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _discovered(release: Release) -> list[dict[str, Any]]:
    """Every endpoint of every Service in the release's namespace, labelled as Prometheus's
    Kubernetes discovery (``role: endpoints``) labels it, for file_sd_configs."""
    core, ns = release.cluster.core, release.namespace
    groups = []
    for service in core.list_namespaced_service(ns).items:
        labels = {
            f"__meta_kubernetes_service_label_{_meta_label(k)}": v for k, v in service.metadata.labels.items()
        }
        endpoints = core.read_namespaced_endpoints(service.metadata.name, ns)
        for subset in endpoints.subsets or []:
            for address, port in itertools.product(subset.addresses or [], subset.ports or []):
                groups.append({
                    "targets": [f"{address.ip}:{port.port}"],
                    "labels": labels | {
                        "__meta_kubernetes_namespace": ns,
                        "__meta_kubernetes_service_name": service.metadata.name,
                        "__meta_kubernetes_endpoint_port_name": port.name or "",
                        "__meta_kubernetes_pod_name": address.target_ref.name if address.target_ref else "",
                    },
                })  # fmt: skip
    return groups


def test_a_real_prometheus_scrapes_the_in_cluster_controller_with_the_charts_scrape_job(
    release: Release, tmp_path: Path
) -> None:
    """The chart's job (prometheus/scrape.yaml) with its relabeling as shipped, against the
    release's real endpoints. Debian's Prometheus is built without Kubernetes discovery, so the
    endpoints are read from the API server here and handed over in file_sd_configs, with the
    labels that discovery gives (``__meta_kubernetes_*``): the API and chat Services, every port."""
    (tmp_path / "endpoints.json").write_text(json.dumps(_discovered(release)))
    job = yaml.safe_load(SCRAPE.read_text())
    del job["kubernetes_sd_configs"]
    job.update(scrape_interval="1s", file_sd_configs=[{"files": [str(tmp_path / "endpoints.json")]}])
    [pod] = release.controller_pods()
    expected = {"namespace": release.namespace, "job": f"{release.name}-threadbox", "pod": pod}
    with running({"scrape_configs": [job]}, tmp_path) as prom:
        assert wait_until(lambda: prom.query("up == 1"), timeout=60, interval=0.5), prom.query("up")
        # One target: the API Service's http port. The chat Service and other ports are dropped.
        [up] = prom.query("up")
        assert up["metric"].items() >= expected.items() and up["metric"]["instance"].endswith(":8600"), up
        # The controller's own series, with the labels the dashboard's variables select on.
        [info] = prom.query(f'threadbox_build_info{{namespace="{release.namespace}"}}')
        assert info["metric"].items() >= expected.items() and info["metric"]["version"], info
    # The control: the chat Service's endpoints were offered, and the job's relabeling dropped them.
    offered = {g["labels"]["__meta_kubernetes_service_name"] for g in _discovered(release)}
    assert {f"{release.name}-threadbox", f"{release.name}-threadbox-chat"} <= offered


def test_upgrade_keeps_a_running_thread_and_new_threads_get_the_new_image(release: Release) -> None:
    old_image = release.cluster.image
    new_image = f"{SANDBOX_REPO}:{UPGRADE_TAG}"  # removed with the release: later sandboxes use it
    subprocess.run([*ctr_images(release.cluster), "tag", "--force", old_image, new_image], check=True)
    with release.api(read=180) as http:
        kept = create_thread(http, "kept")
        assert stdout(run(http, kept, "secret = 6 * 7\nprint(secret)")) == "42\n"
    [before] = release.sandbox_pods(kept)
    controller_before = release.controller_pods()
    release.helm(
        "upgrade", release.name, str(CHART), "-f", str(release.values),
        "--set", f"sandbox.namespace={release.sandbox_namespace}",
        "--set", f"sandbox.image.tag={UPGRADE_TAG}", "--wait", "--timeout", "4m",
    )  # fmt: skip
    release.kubectl("-n", release.namespace, "rollout", "status", f"deployment/{release.service_account}")
    release.wait_serving()
    with release.api(read=180) as http:
        assert stdout(run(http, kept, "print(secret)")) == "42\n"  # the kernel's state survived
        fresh = create_thread(http, "fresh")
        assert stdout(run(http, fresh, "print('new')")) == "new\n"
    assert not set(release.controller_pods()) & set(controller_before)  # a new controller adopted it
    [after] = release.sandbox_pods(kept)
    assert after.metadata.uid == before.metadata.uid
    assert after.spec.containers[0].image == old_image
    [new_pod] = release.sandbox_pods(fresh)
    assert new_pod.spec.containers[0].image == new_image


def test_uninstall_saves_the_files_and_leaves_no_sandbox_behind(release: Release) -> None:
    with release.api(read=180) as http:
        tid = create_thread(http, "last")
        # Written after the turn ended: only the uninstall's save (hook or SIGTERM) can store it.
        late = "import threading\nthreading.Timer(1, lambda: open('late.txt', 'w').write('late')).start()"
        events = run(http, tid, late)
    assert events[-1]["type"] == "done" and events[-1]["status"] == "ok", json.dumps(events)
    [pod] = release.sandbox_pods(tid)
    late_file = (
        "exec",
        "-n",
        release.sandbox_namespace,
        pod.metadata.name,
        "--",
        "cat",
        "/workspace/late.txt",
    )
    assert wait_until(lambda: release.kubectl(*late_file, check=False) == "late", 30, interval=0.5)
    out = release.helm("uninstall", release.name, "--wait", "--timeout", "4m")
    assert "uninstalled" in out
    assert release.sandbox_pods() == []  # the hook waited for each pod to go
    core, sb = release.cluster.core, release.sandbox_namespace
    assert core.read_namespace(sb).metadata.name == sb  # kept: its emptiness is the hook's work
    assert (
        core.list_namespaced_secret(sb, label_selector="app.kubernetes.io/name=threadbox-sandbox").items == []
    )
    assert "threadbox-sandboxes" not in release.kubectl("-n", sb, "get", "networkpolicies", "-o", "name")
    assert release.minio.store(release.bucket).read_file(tid, "late.txt") == b"late"
    assert (
        release.kubectl("-n", release.namespace, "get", "jobs", "-o", "name").strip() == ""
    )  # hook succeeded
