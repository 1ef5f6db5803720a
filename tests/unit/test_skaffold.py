"""skaffold.yaml, checked without skaffold (no CI job runs it): the order of its two configs,
BuildKit, the port-forwards, the reload profile's file sync and the stage it needs, and that
every file, chart value and image it names exists. The fixes here came from a real run on kind
(../shared/research/kind-feasibility.md, issue 17)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "threadbox"


def configs() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all((ROOT / "skaffold.yaml").read_text())}


def release(config: dict[str, Any]) -> dict[str, Any]:
    [only] = config["deploy"]["helm"]["releases"]
    return only  # type: ignore[no-any-return]


def profile(config: dict[str, Any], name: str) -> dict[str, Any]:
    profiles: list[dict[str, Any]] = config["profiles"]
    [found] = [p for p in profiles if p["name"] == name]
    return found


def added(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The values a profile's ``add`` patches put at their paths, by path."""
    patches = profile(config, name)["patches"]
    assert {p["op"] for p in patches} == {"add"}
    return {p["path"]: p["value"] for p in patches}


def chart_has(dotted: str) -> bool:
    node: Any = yaml.safe_load((CHART / "values.yaml").read_text())
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def minio_docs() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((ROOT / "manifests" / "minio.yaml").read_text()))


def test_minio_and_its_secret_deploy_before_the_chart_and_go_after_it() -> None:
    """skaffold deploys configs in order, waiting on each, and cleans up in reverse; within one
    config it runs helm before kubectl, whatever the YAML says."""
    minio, threadbox = configs().values()  # in file order
    assert (minio["metadata"]["name"], threadbox["metadata"]["name"]) == ("minio", "threadbox")
    assert threadbox["requires"] == [{"configs": ["minio"]}]
    assert set(minio["deploy"]) == {"kubectl"} and "helm" not in minio["deploy"]
    assert set(threadbox["deploy"]) == {"helm"} and "manifests" not in threadbox
    assert minio["manifests"]["rawYaml"] == ["manifests/minio.yaml"]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in minio_docs()}
    chart = release(threadbox)
    dev = yaml.safe_load((ROOT / chart["valuesFiles"][0]).read_text())
    assert {("Namespace", chart["namespace"]), ("Secret", dev["minio"]["existingSecret"])} <= kinds
    assert {("Deployment", "minio"), ("Service", "minio")} <= kinds


def test_images_build_with_buildkit_and_the_chart_runs_what_was_built() -> None:
    threadbox = configs()["threadbox"]
    assert threadbox["build"]["local"] == {"push": False, "useBuildkit": True}
    artifacts = threadbox["build"]["artifacts"]
    templates = str(release(threadbox)["setValueTemplates"])
    for artifact in artifacts:
        dockerfile = (ROOT / artifact.get("context", ".") / artifact["docker"]["dockerfile"]).read_text()
        assert "RUN --mount=type=secret" in dockerfile  # the classic builder rejects it
        assert "# syntax=" not in dockerfile  # it would pull a frontend from Docker Hub
        key = re.sub(r"[^A-Za-z0-9]", "_", artifact["image"])
        assert f"IMAGE_REPO_{key}" in templates and f"IMAGE_TAG_{key}" in templates, key
    for key in release(threadbox)["setValueTemplates"]:
        assert chart_has(key), key


def test_every_file_named_exists() -> None:
    minio, threadbox = configs().values()
    chart = release(threadbox)
    paths = [*minio["manifests"]["rawYaml"], *chart["valuesFiles"], f"{chart['chartPath']}/Chart.yaml"]
    paths += [p["value"] for p in profile(minio, "gvisor")["patches"]]
    for path in paths:
        assert (ROOT / path).is_file(), path
    dev = yaml.safe_load((ROOT / chart["valuesFiles"][0]).read_text())
    assert set(dev) <= set(yaml.safe_load((CHART / "values.yaml").read_text()))


def test_the_api_console_and_minio_console_are_forwarded_to_loopback() -> None:
    minio, threadbox = configs().values()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    [api] = threadbox["portForward"]
    assert (api["resourceType"], api["resourceName"], api["namespace"]) == (
        "service",
        "threadbox",
        "threadbox",
    )
    assert api["port"] == api["localPort"] == values["service"]["port"]
    [console] = minio["portForward"]
    service = next(d for d in minio_docs() if d["kind"] == "Service")
    assert console["port"] in {p["port"] for p in service["spec"]["ports"]}
    assert api["address"] == console["address"] == "127.0.0.1"


def test_skaffold_dev_syncs_python_edits_into_a_controller_that_reloads() -> None:
    threadbox = configs()["threadbox"]
    assert profile(threadbox, "reload")["activation"] == [{"command": "dev"}]
    patch = added(threadbox, "reload")
    assert threadbox["build"]["artifacts"][0]["image"] == "localhost/threadbox-controller"
    target = patch["/build/artifacts/0/docker/target"]
    dockerfile = (ROOT / "Dockerfile.controller").read_text()
    stage = dockerfile.split(f"AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
    rules = patch["/build/artifacts/0/sync"]["manual"]
    assert {r["src"] for r in rules} >= {"controller/**/*.py"}
    for rule in rules:
        assert rule["src"].startswith("controller/") and rule["dest"] == "/app"
    assert "COPY --chown=10001:10001 controller/ /app/controller/" in stage  # writable by the user
    assert "ENV PYTHONPATH=/app" in stage and "watchfiles --filter python" in stage
    assert '\\"threadbox $*\\" /app/controller"' in stage  # the chart's args: [serve]
    assert dockerfile.rstrip().splitlines()[-1] == "FROM runtime"  # plain builds: no watcher
    writable = "/deploy/helm/releases/0/setValueTemplates/securityContext.readOnlyRootFilesystem"
    assert patch[writable] == "false"  # skaffold copies files into the container's root


@pytest.mark.parametrize(
    ("name", "value"), [("warm-pool", "sandbox.warmPool.size"), ("gvisor", "sandbox.runtimeClassName")]
)
def test_profiles_set_chart_values_that_exist(name: str, value: str) -> None:
    threadbox = configs()["threadbox"]
    prefix = "/deploy/helm/releases/0/setValueTemplates/"
    for path, setting in added(threadbox, name).items():
        assert path.startswith(prefix) and isinstance(setting, str)  # --set strings, as templates are
        assert chart_has(path.removeprefix(prefix))
    assert f"{prefix}{value}" in added(threadbox, name)


def test_the_kind_cluster_and_sandboxes_reach_minio() -> None:
    kind = yaml.safe_load((ROOT / "manifests" / "kind-config.yaml").read_text())
    assert kind["kind"] == "Cluster" and kind["networking"]["podSubnet"]
    dev = yaml.safe_load((ROOT / release(configs()["threadbox"])["valuesFiles"][0]).read_text())
    deployment = next(d for d in minio_docs() if d["kind"] == "Deployment")
    peer = dev["minio"]["sandboxPeer"]  # a NetworkPolicy peer: it must select MinIO's pods
    assert (
        peer["podSelector"]["matchLabels"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    namespace = peer.get("namespaceSelector", {}).get("matchLabels", {})
    assert namespace.items() <= {"kubernetes.io/metadata.name": deployment["metadata"]["namespace"]}.items()


# The first MinIO release with the fix of GHSA-jjjj-jwhf-8rgr (CVE-2025-62506).
MINIO_FIXED = datetime(2025, 10, 15, 17, 29, 55, tzinfo=UTC)


def test_the_dev_minio_is_built_here_from_a_commit_with_the_session_policy_fix() -> None:
    """The date is the cheap guard; that 7aac2a2c5b7c has the fix was read in its cmd/iam.go
    (the session policy is checked with DenyOnly false)."""
    [deployment] = [d for d in minio_docs() if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    repository, tag = container["image"].split(":")
    assert repository == "localhost/threadbox-minio" and container["imagePullPolicy"] == "Never"
    script = (ROOT / "hack" / "install-minio.sh").read_text()
    assert f'MINIO_VERSION="${{MINIO_VERSION:-{tag}}}"' in script  # CI's MinIO is the dev one
    [stamp] = re.fullmatch(r"v0\.0\.0-(\d{14})-[0-9a-f]{12}", tag).groups()  # type: ignore[union-attr]
    assert datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=UTC) > MINIO_FIXED
