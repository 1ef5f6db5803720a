"""Issue 16 acceptance: a real Prometheus (Debian's package, hack/install-prometheus.sh) scrapes a
controller with the Kubernetes backend and a warm pool, with the chart's scrape job
(charts/threadbox/prometheus/scrape.yaml) and alerts (prometheus/alerts.yaml).

After a scripted set of turns (a warm hit, a warm miss, ok, an exception, a timeout, an LLM
answer, a deleted thread, refused requests) and Slack traffic (a signed mention delivered to the
chat port and answered by the LLM with code run in a sandbox pod, Slack's redelivery of it, and a
forged delivery), every dashboard panel's query has data, the Slack row's included. Then two
faults: the warm pool cannot refill (a ResourceQuota of 0 pods, its pod deleted), and MinIO
stops; each alert written for them fires.

What differs from production, on purpose:
- The controller runs on the host, as in the other cluster tests, so the scrape job keeps the
  chart's name, path and labels but finds its target in static_configs, labelled as the job's
  relabeling labels a Service's endpoints (namespace, job), instead of kubernetes_sd_configs.
- The rules' ``for:`` durations are cut to 5 s in the test's copy and scrapes and rule
  evaluations run every second, so the alerts fire within the test's two minutes.
- Slack's Web API is devkit/fake_slack.py on the host. It refuses streaming (``not_allowed``),
  as a workspace without streaming does, so the reply goes on by chat.update: that refusal is
  the Slack error the errors panel shows (the other kinds, a failed Web API call and a failed
  turn, need faults of their own; tests/integration/test_slack_*.py cover them).
- It runs once, under runc: metrics and alerts do not depend on the sandbox runtime.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from controller.backends.kubernetes import KubernetesBackend
from devkit.fake_slack import FakeSlack, serve_fake_slack
from devkit.minio import MinioServer
from devkit.slack_events import SlackSender, slack_settings
from tests.cluster.conftest import Cluster, minio_on_node
from tests.support.agent import chat
from tests.support.client import RuntimeClient, create_thread, run
from tests.support.fake_openai import FakeOpenAI, Text, fake_llm, run_python
from tests.support.metrics import claim_outcomes
from tests.support.poll import wait_until
from tests.support.prometheus import ALERTS, CHART, SCRAPE, Prometheus, running

pytestmark = pytest.mark.cluster

JOB_NAMESPACE = "threadbox-e2e"  # the namespace label the chart's relabeling would give
SHORT_FOR = "5s"
SLACK_CHANNEL = "C0METRICS"


@pytest.fixture(scope="module")
def runtime_class() -> None:
    """Once, under the cluster's default runtime (runc), not once per runtime."""
    return None


# A MinIO of this module's own: the test stops it.
cluster_minio = pytest.fixture(scope="module", name="cluster_minio")(minio_on_node)


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with fake_llm() as fake:
        yield fake


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with serve_fake_slack() as fake:
        yield fake


def prometheus_config(target: str, workdir: Path) -> dict[str, Any]:
    job = yaml.safe_load(SCRAPE.read_text())
    del job["kubernetes_sd_configs"], job["relabel_configs"]
    job["scrape_interval"] = "1s"
    job["static_configs"] = [{"targets": [target], "labels": {"namespace": JOB_NAMESPACE}}]
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = SHORT_FOR
    (workdir / "alerts.yaml").write_text(yaml.safe_dump(rules))
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yaml"],
        "scrape_configs": [job],
    }


def panel_queries() -> list[tuple[str, str, str]]:
    """(row, panel, query) for every target, with the dashboard's variables filled in."""
    out, row = [], ""
    for panel in json.loads((CHART / "dashboards" / "threadbox.json").read_text())["panels"]:
        if panel["type"] == "row":
            row = panel["title"]
            continue
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$namespace", JOB_NAMESPACE)
            out.append((row, panel["title"], expr.replace("$job", "threadbox")))
    return out


def script_turns(client: RuntimeClient, cluster: Cluster, llm: FakeOpenAI) -> str:
    """Every kind of turn the dashboard shows; returns the warm-claimed thread's id."""
    backend = client.runtime.backend
    assert isinstance(backend, KubernetesBackend)
    cluster.wait("a ready warm pod", lambda: sum(p.ready for p in backend.pools.values()) >= 1, 120)
    # Two new threads at once: one claims the pool's only pod, the other finds the pool empty. One
    # after the other, the second could find a refilled pod on a slow run (a refill waits only
    # for claims to pause, and a turn of the first takes longer than a pod start).
    threads = [create_thread(client, name) for name in ("first", "second")]
    with ThreadPoolExecutor(2) as turns:
        assert [r[-1]["status"] for r in turns.map(lambda t: run(client, t, "print(1)"), threads)] == [
            "ok"
        ] * 2
    [hit] = [t for t in threads if cluster.pods(t)[0].metadata.name.startswith("tbw-")]
    [miss] = set(threads) - {hit}
    assert run(client, hit, "1/0")[-1]["status"] == "error"
    timed_out = run(client, hit, "import time; time.sleep(30)", timeout=1)
    assert any(e.get("kind") == "timeout" for e in timed_out), timed_out
    llm.add(Text("Hello from the model."))
    assert chat(client, hit, "hi")[-1]["status"] == "ok"
    assert client.delete(f"/threads/{miss}").status_code == 204
    assert client.get("/threads/api-aaaaaaaaaaaaaaaa").status_code == 404
    assert httpx.get(client.base_url.join("/threads")).status_code == 401
    counted = claim_outcomes(client.runtime.metrics.registry)
    assert counted == {("hit", "claimed"): 1, ("miss", "empty"): 1}, counted
    return hit


def script_slack(client: httpx.Client, fake: FakeSlack, llm: FakeOpenAI) -> None:
    """What the Slack row shows: events, acks by outcome and their latency, and an error (a
    refused stream, after which the reply goes on by chat.update)."""
    fake.refuse_streaming("not_allowed")
    llm.add(run_python("print(6 * 7)", when="six times seven"), Text("It is 42.", when="42"))
    slack = SlackSender(client)
    sent = slack.mention(SLACK_CHANNEL, "What is six times seven?")
    assert sent.response.status_code == 200, sent.response.text

    def answered() -> bool:  # the final reply carries the feedback buttons
        replies = [m for m in fake.messages_in_thread(SLACK_CHANNEL, sent.ts) if m.get("bot_id")]
        return any("feedback_buttons" in json.dumps(m.get("blocks")) for m in replies)

    fake.wait_for(answered, 120, "the Slack answer")
    assert "It is 42." in fake.text_in_thread(SLACK_CHANNEL, sent.ts)
    assert fake.calls_of("chat.startStream"), "no stream was tried"
    sample = client.runtime.metrics.registry.get_sample_value  # type: ignore[attr-defined]
    assert wait_until(lambda: sample("threadbox_slack_answers_running") == 0, 30), "the Slack turn goes on"
    assert slack.deliver(sent.body, retry=1).status_code == 200  # Slack's redelivery: no second turn
    assert slack.post_raw(b"{}", signature="v0=forged").status_code == 401


def starve_the_pool(cluster: Cluster) -> None:
    """No pod may be created in the sandbox namespace, and the warm pod is deleted."""
    quota = {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}
    cluster.core.create_namespaced_resource_quota(cluster.namespace, quota)
    cluster.core.delete_collection_namespaced_pod(cluster.namespace, label_selector="threadbox.dev/pool=warm")


def fired(prom: Prometheus, *alerts: str, timeout: float = 60) -> None:
    if not wait_until(lambda: set(alerts) <= prom.firing(), timeout, interval=1):
        raise AssertionError(f"{alerts} not all firing after {timeout:g}s: {prom.firing()}")


def test_every_panel_has_data_and_each_alert_fires_in_its_fault(
    cluster: Cluster,
    cluster_minio: MinioServer,
    k8s_api: Any,
    llm: FakeOpenAI,
    fake_slack: FakeSlack,
    tmp_path: Path,
) -> None:
    llm_settings = {"agent": "builtin", "llm_base_url": llm.base_url, "llm_api_key": "test"}
    client = k8s_api(warm_pool_size=1, **llm_settings, **slack_settings(fake_slack))
    target = re.sub(r"^https?://", "", str(client.base_url).rstrip("/"))
    with running(prometheus_config(target, tmp_path), tmp_path) as prom:
        hit = script_turns(client, cluster, llm)
        script_slack(client, fake_slack, llm)
        try:
            starve_the_pool(cluster)
            fired(prom, "ThreadboxWarmPoolEmpty", "ThreadboxSandboxStartFailures")
        finally:
            cluster.core.delete_namespaced_resource_quota("no-pods", cluster.namespace)
        cluster_minio.process.terminate()
        cluster_minio.process.wait(timeout=20)
        assert client.get("/readyz").status_code == 503
        saved = run(client, hit, "open('kept.txt', 'w').write('x')")
        assert any(e.get("ename") == "PersistFailed" for e in saved), saved
        fired(prom, "ThreadboxStorageUnreachable", "ThreadboxPersistFailures", "ThreadboxTurnErrorRatio")
        empty = [(row, title, expr) for row, title, expr in panel_queries() if not prom.query(expr)]
    assert empty == [], f"panels without data: {empty}"
