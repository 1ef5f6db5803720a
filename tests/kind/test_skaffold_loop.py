"""The README's developer loop, for real: kind + skaffold on a clean clone (issue 17).

In order, on one kind cluster (hack/kind/up) and one clone of HEAD:
1. ``skaffold run`` builds both images, loads them into kind and deploys MinIO and the chart;
   a turn through the API runs in a sandbox pod.
2. The chart, upgraded with Slack on and pointed at a fake Slack the pod can reach, answers a
   Slack-signed mention sent to the controller's chat Service.
3. ``skaffold dev``: an edit to a controller .py file is synced into the running pod (no image
   build) and shows in the API; an edit to the sandbox image's files rebuilds that image, and a
   new thread's sandbox sees it.
4. Ctrl-C (SIGINT to skaffold): the chart's cleanup hook saves the threads' files and removes
   every sandbox pod and Secret before MinIO goes.

The steps depend on each other, so they are one test; each step's failure names the step.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.k8s.names import all_sandboxes_selector
from devkit.client import bearer, stream_events
from devkit.fake_slack import BOT_TOKEN, FakeSlack, serve_fake_slack
from devkit.slack_events import SIGNING_SECRET, SlackSender, code
from tests.kind.conftest import ROOT, Kind

pytestmark = [pytest.mark.kind, pytest.mark.timeout(3600)]

NS = "threadbox"
SANDBOXES = "threadbox-sandboxes"
CONTEXT = "kind-threadbox"
# skaffold: no update check or survey prompt (both would go to the network or wait for a key).
QUIET = ("--interactive=false", "--update-check=false")


def step(what: str) -> None:
    print(f"\n[kind test {time.strftime('%H:%M:%S')}] {what}", flush=True)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean clone of HEAD: only what is committed can make the loop work."""
    dest = tmp_path_factory.mktemp("kind") / "threadbox"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(dest)], check=True, timeout=300)
    return dest


@contextmanager
def forwarded(kind: Kind, target: str, ports: str, log: Path) -> Iterator[int]:
    """``kubectl port-forward`` of ``target`` inside the cluster's netns; yields the local port."""
    proc = kind.popen("kubectl", "--context", CONTEXT, "-n", NS, "port-forward", target, ports, log=log)
    local = int(ports.split(":")[0])
    try:
        kind.wait(f"port-forward {target} {ports}", lambda: proc.poll() is None and kind.port_open(local), 60)
        yield local
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def admin_token(kind: Kind) -> str:
    import base64

    raw = kind.kubectl("-n", NS, "get", "secret", "threadbox", "-o", "jsonpath={.data.adminToken}")
    return base64.b64decode(raw).decode()


def client(kind: Kind, port: int, token: str) -> httpx.Client:
    made = kind.net(
        lambda: httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers=bearer(token) if token else {},
            timeout=httpx.Timeout(10, read=300),
        )
    )
    assert isinstance(made, httpx.Client)
    return made


def execute(kind: Kind, api: httpx.Client, thread: str, source: str) -> tuple[str, str]:
    """A new (or existing) thread ``thread`` runs ``source``; returns its id and its stdout."""

    def go() -> tuple[str, str]:
        created = api.post("/threads", json={"name": thread})
        assert created.status_code == 201, created.text
        tid = str(created.json()["id"])
        with api.stream("POST", f"/threads/{tid}/execute", json={"code": source}) as r:
            assert r.status_code == 200, r.read()
            events = stream_events(r.iter_lines())
        return tid, "".join(str(e.get("text", "")) for e in events if e["type"] == "stdout")

    return kind.net(go)


def sandbox_pods(kind: Kind, namespaces: str = "--all-namespaces") -> list[dict[str, Any]]:
    out = kind.kubectl("get", "pods", namespaces, "-l", all_sandboxes_selector(), "-o", "json")
    return list(json.loads(out)["items"])


def sandbox_secrets(kind: Kind) -> list[str]:
    out = kind.kubectl("get", "secrets", "--all-namespaces", "-l", all_sandboxes_selector(), "-o", "name")
    return out.split()


def api_answers(kind: Kind, port: int) -> bool:
    def probe() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    return kind.net(probe, timeout=30)


def title(kind: Kind, port: int) -> str:
    def get() -> str:
        try:
            return str(httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).json()["info"]["title"])
        except (httpx.HTTPError, ValueError, KeyError):
            return ""

    return kind.net(get, timeout=30)


def controller_pod(kind: Kind) -> str:
    return kind.kubectl(
        "-n", NS, "get", "pods", "-l", "app.kubernetes.io/name=threadbox-controller",
        "--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].metadata.name}",
    ).strip()  # fmt: skip


def kind_gateway(kind: Kind) -> str:
    """The kind network's IPv4 gateway: a listener on 0.0.0.0 beside the cluster answers pods there."""
    out = kind.run(
        "docker", "network", "inspect", "kind", "-f", "{{range .IPAM.Config}}{{.Gateway}} {{end}}", timeout=60
    )
    return next(ip for ip in out.split() if "." in ip)


def watch_cleanup_logs(kind: Kind, into: list[str], stop: threading.Event) -> threading.Thread:
    """Collects the logs of the chart's pre-delete cleanup Job while `helm uninstall` runs it
    (helm deletes the Job as soon as it succeeds, so its output is caught while it runs)."""

    def run() -> None:
        while not stop.is_set():
            try:
                pods = kind.kubectl(
                    "-n", NS, "get", "pods", "-l", "job-name=threadbox-cleanup", "-o", "jsonpath={.items[*].metadata.name}", timeout=20
                ).split()  # fmt: skip
            except (AssertionError, subprocess.TimeoutExpired):
                pods = []
            for pod in pods:
                # It may already have finished: its logs stay readable until helm deletes it.
                with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                    kind.kubectl(
                        "-n", NS, "wait", "--for=condition=Ready", f"pod/{pod}", "--timeout=60s", timeout=70
                    )
                try:
                    into.append(kind.kubectl("-n", NS, "logs", "-f", f"pod/{pod}", timeout=300))
                except (AssertionError, subprocess.TimeoutExpired) as exc:
                    into.append(f"<logs of {pod} lost: {exc}>")
                return
            stop.wait(0.3)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_skaffold_run_then_dev_then_ctrl_c(kind: Kind, clone: Path, tmp_path: Path) -> None:
    logs = tmp_path
    token = secrets.token_hex(4)
    step(f"skaffold run in a clean clone ({clone}); logs in {logs}")
    # A previous run's deployment (one that failed half-way) would hide what a fresh cluster does.
    kind.run("skaffold", "delete", "--kube-context", CONTEXT, *QUIET, timeout=600, cwd=clone)
    t0 = time.monotonic()
    run_log = logs / "skaffold-run.log"
    run = kind.popen("skaffold", "run", "--kube-context", CONTEXT, *QUIET, log=run_log, cwd=clone)
    try:
        rc = run.wait(timeout=1800)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(timeout=60)
    assert rc == 0, run_log.read_text(errors="replace")[-4000:]
    step(f"skaffold run: built, loaded and deployed in {time.monotonic() - t0:.0f}s")
    images = kind.kubectl(
        "-n", NS, "get", "deploy", "threadbox", "-o", "jsonpath={.spec.template.spec.containers[0].image}"
    )
    assert images.startswith("localhost/threadbox-controller:"), images

    # 1. a turn through the API, in a sandbox pod
    with forwarded(kind, "svc/threadbox", "18600:8600", logs / "pf-api.log") as port:
        api = client(kind, port, admin_token(kind))
        assert execute(kind, api, "kind-run", "print(6 * 7)")[1].strip() == "42"
        pods = sandbox_pods(kind, f"--namespace={SANDBOXES}")
        assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
        assert pods[0]["spec"]["containers"][0]["image"].startswith("localhost/threadbox-sandbox:")
        kind.net(api.close)

    # 2. Slack: the chart with Slack on, its Web API a fake listening beside the cluster
    gateway = kind_gateway(kind)
    cm = serve_fake_slack("0.0.0.0")
    fake: FakeSlack = kind.net(cm.__enter__)
    try:
        port_ = int(fake.url.rsplit(":", 1)[1].strip("/"))
        fake_url = f"http://{gateway}:{port_}/"
        step(f"helm upgrade: Slack on, Web API at the fake ({fake_url})")
        # The controller's egress policy allows only public addresses and the API server; the
        # fake sits on a private one.
        egress = [
            {"to": [{"ipBlock": {"cidr": f"{gateway}/32"}}], "ports": [{"port": port_, "protocol": "TCP"}]}
        ]
        kind.run(
            "helm", "upgrade", "threadbox", clone / "charts" / "threadbox", "--kube-context", CONTEXT,
            "-n", NS, "--reuse-values", "--wait", "--timeout", "5m",
            "--set", "slack.mode=http", "--set", f"slack.apiUrl={fake_url}",
            "--set", f"slack.botToken={BOT_TOKEN}", "--set", f"slack.signingSecret={SIGNING_SECRET}",
            "--set-json", f"networkPolicy.egress.extra={json.dumps(egress)}",
            timeout=400,
        )  # fmt: skip
        kind.kubectl("-n", NS, "rollout", "status", "deploy/threadbox", "--timeout=300s", timeout=320)
        with (
            forwarded(kind, "svc/threadbox", "18600:8600", logs / "pf-api2.log") as port,
            forwarded(kind, "svc/threadbox-chat", "18601:8601", logs / "pf-chat.log") as chat_port,
        ):
            api = client(kind, port, admin_token(kind))
            chat = client(kind, chat_port, "")
            sender = SlackSender(api, chat=chat)
            sent = kind.net(lambda: sender.mention("C0KIND", code("print(6 * 7)")))
            assert sent.response.status_code == 200, sent.response.text

            def answered() -> str | None:
                text = fake.text_in_thread("C0KIND", sent.thread_ts)
                return text if "42" in text else None

            answer = fake.wait_for(answered, timeout=180, what="the bot's answer (42) in the Slack thread")
            assert "42" in answer
            kind.net(api.close)
            kind.net(chat.close)
    finally:
        kind.net(lambda: cm.__exit__(None, None, None))

    # 3. skaffold dev: file sync, then an image rebuild
    step("skaffold dev")
    dev_log = logs / "skaffold-dev.log"
    dev = kind.popen(
        "skaffold", "dev", "--kube-context", CONTEXT, *QUIET, "--port-forward=user", log=dev_log, cwd=clone
    )
    try:
        kind.wait(
            "skaffold dev to deploy and watch ('Watching for changes' in its log)",
            lambda: dev.poll() is None and "Watching for changes" in dev_log.read_text(errors="replace"),
            timeout=1200,
        )
        kind.wait("the API on skaffold's port-forward 127.0.0.1:8600", lambda: api_answers(kind, 8600), 180)
        before = controller_pod(kind)
        assert title(kind, 8600) == "threadbox"

        api_py = clone / "controller" / "api.py"
        api_py.write_text(api_py.read_text().replace('title="threadbox",', f'title="threadbox {token}",', 1))
        step("edited controller/api.py (a synced file)")
        kind.wait("the synced edit in /openapi.json", lambda: title(kind, 8600) == f"threadbox {token}", 180)
        assert "Syncing 1 files" in dev_log.read_text(errors="replace")
        assert controller_pod(kind) == before, "a synced edit must not replace the controller pod"

        marker = clone / "sandbox-image" / "threadbox_sandbox" / "kind_marker.txt"
        marker.write_text(token)
        step("added sandbox-image/threadbox_sandbox/kind_marker.txt (an image change)")
        sandbox_before = kind.kubectl(
            "-n", NS, "get", "deploy", "threadbox", "-o", "jsonpath={.spec.template.spec.containers[0].env[?(@.name=='THREADBOX_SANDBOX_IMAGE')].value}"
        )  # fmt: skip

        def sandbox_image_changed() -> bool:
            now = kind.kubectl(
                "-n", NS, "get", "deploy", "threadbox", "-o", "jsonpath={.spec.template.spec.containers[0].env[?(@.name=='THREADBOX_SANDBOX_IMAGE')].value}"
            )  # fmt: skip
            return now != sandbox_before

        kind.wait(
            "skaffold to rebuild the sandbox image and redeploy", sandbox_image_changed, 900, interval=3
        )
        kind.kubectl("-n", NS, "rollout", "status", "deploy/threadbox", "--timeout=300s", timeout=320)
        kind.wait("the API after the redeploy", lambda: api_answers(kind, 8600), 180)
        api = client(kind, 8600, admin_token(kind))
        _, seen = execute(
            kind, api, "kind-image", "print(open('/opt/threadbox/threadbox_sandbox/kind_marker.txt').read())"
        )
        assert seen.strip() == token

        # 4. a file to save, then Ctrl-C
        files_thread, out = execute(
            kind, api, "kind-files", f"open('kept-{token}.txt', 'w').write('{token}'); print('written')"
        )
        assert out.strip() == "written"
        # Saved at the end of the turn; the cleanup hook saves what changed since (nothing here).
        stored = kind.net(lambda: api.get(f"/threads/{files_thread}/files").json())
        assert f"kept-{token}.txt" in [f["name"] for f in stored], stored
        kind.net(api.close)
        assert len(sandbox_pods(kind)) >= 2
        cleanup_logs: list[str] = []
        stop = threading.Event()
        watcher = watch_cleanup_logs(kind, cleanup_logs, stop)
        step("SIGINT to skaffold dev")
        dev.send_signal(signal.SIGINT)
        rc = dev.wait(timeout=900)
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait(timeout=60)
        step(f"skaffold dev log: {dev_log}")
    stop.set()
    watcher.join(timeout=60)
    assert rc == 0, dev_log.read_text(errors="replace")[-3000:]
    assert sandbox_pods(kind) == []
    assert sandbox_secrets(kind) == []
    logged = "\n".join(cleanup_logs)
    # Only the thread made in this skaffold dev session: `skaffold dev` re-applies MinIO with its
    # own run label, so MinIO (emptyDir) restarted empty at its start, and sandboxes from the
    # `skaffold run` before it can no longer save (AccessDenied; see the README's kind section).
    assert f"thread {files_thread}: saved" in logged, logged
    assert f"could not save the files of thread {files_thread}" not in logged, logged
    assert "sandbox(es) removed" in logged and "threadbox cleanup: 0 sandbox" not in logged, logged
