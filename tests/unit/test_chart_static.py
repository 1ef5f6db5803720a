"""Checks of the chart and dashboard that need no cluster (tests/cluster/test_chart.py installs the
chart for real; skaffold.yaml and manifests/: test_skaffold.py)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from controller.config import Settings
from controller.metrics import Metrics
from controller.profiles import ProfilesFile, ProfileSpec

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "threadbox"

# The client's method suffix -> (API group, resource) and method prefix -> RBAC verb.
RESOURCES = {
    "pod": ("", "pods"),
    "secret": ("", "secrets"),
    "network_policy": ("networking.k8s.io", "networkpolicies"),
    "lease": ("coordination.k8s.io", "leases"),
    "event": ("", "events"),
}
VERBS = {
    "create": "create",
    "read": "get",
    "list": "list",
    "patch": "patch",
    "replace": "update",
    "delete": "delete",
    "delete_collection": "deletecollection",
}
CALL = re.compile(r"\.(" + "|".join(VERBS) + r")_namespaced_(\w+?)\b")
WATCH = re.compile(
    r"\.(?:stream|watch)\([^)]*?\.list_namespaced_(\w+)", re.S
)  # .watch: Kube.watch in controller/k8s/api.py
# A lister handed to ListWatch (controller/k8s/watch.py), which lists and watches with it.
LISTER = re.compile(
    r"def \w+\(kube: Kube\) -> Callable\[\.\.\., Any\]:\s+return kube\.\w+\.list_namespaced_(\w+)"
)


def exported_metric_names() -> set[str]:
    """What /metrics can show: counters as ``<name>_total``, histograms as bucket/sum/count."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return {
        family.name + suffix
        for family in Metrics().registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def dashboard_exprs() -> list[str]:
    dash = json.loads((CHART / "dashboards" / "threadbox.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_dashboard_names_only_metrics_the_controller_exports() -> None:
    exported = exported_metric_names()
    named = {m for expr in dashboard_exprs() for m in re.findall(r"\bthreadbox_\w+", expr)}
    assert named - exported == set()
    # Every panel the operators asked for is there: start latency by kind, reaps by reason, Slack, pool.
    exprs = "\n".join(dashboard_exprs())
    for needle in (
        "histogram_quantile(0.95, sum by (le, kind) (rate(threadbox_sandbox_start_seconds_bucket",
        "sum by (reason) (increase(threadbox_sandboxes_reaped_total",
        "threadbox_slack_acks_total",
        "threadbox_slack_errors_total",
        "threadbox_warm_pool_claims_total",
        "threadbox_queue_length",
        "threadbox_persist_errors_total",
    ):
        assert needle in exprs, needle


def controller_rules() -> set[tuple[str, str, str]]:
    """(group, resource, verb) granted by the chart's controller Role (plain YAML in _helpers.tpl)."""
    text = (CHART / "templates" / "_helpers.tpl").read_text()
    block = text.split('{{- define "threadbox.controllerRules" -}}', 1)[1].split("{{- end }}", 1)[0]
    return {
        (group, resource, verb)
        for rule in yaml.safe_load(block)
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


BULK_CLEANUP = ROOT / "controller" / "k8s" / "cleanup.py"  # its bulk deletes: `threadbox cleanup` only


def required_permissions(sources: list[Path] | None = None) -> set[tuple[str, str, str]]:
    """(group, resource, verb) of every Kubernetes API call the controller's backend code makes."""
    sources = sources or [
        ROOT / "controller" / "backends" / "kubernetes.py",
        *(p for p in (ROOT / "controller" / "k8s").glob("*.py") if p != BULK_CLEANUP),
    ]
    needed = set()
    for path in sources:
        text = path.read_text()
        for prefix, kind in CALL.findall(text):
            assert kind in RESOURCES, (
                f"{path.name}: a call on {kind!r}: add it to RESOURCES and the chart's Role"
            )
            needed.add((*RESOURCES[kind], VERBS[prefix]))
        for kind in WATCH.findall(text) + LISTER.findall(text):
            needed.add((*RESOURCES[kind], "watch"))
    return needed


def test_controller_role_grants_exactly_what_the_backend_calls() -> None:
    needed = required_permissions()
    assert ("", "pods", "create") in needed and ("", "pods", "watch") in needed  # the scan sees calls
    granted = controller_rules()
    assert needed - granted == set(), "the Role misses these"
    assert granted - needed == set(), "the Role grants more than the code uses"


def test_cleanup_hook_role_adds_what_the_bulk_cleanup_calls() -> None:
    text = (CHART / "templates" / "cleanup-hook.yaml").read_text()
    block = text.split('include "threadbox.controllerRules" . | nindent 2 }}', 1)[1].split("---", 1)[0]
    added = {
        (group, resource, verb)
        for rule in yaml.safe_load(block)
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    needed = required_permissions([BULK_CLEANUP])
    assert ("", "pods", "deletecollection") in needed  # the scan sees the calls
    assert needed - added == set(), "the cleanup hook's Role misses these"


def values() -> dict[str, Any]:
    return dict(yaml.safe_load((CHART / "values.yaml").read_text()))


def test_readme_values_table_covers_every_top_level_value() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Deploying with Helm (platform teams)", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Za-z]+)` \|", section, re.M))
    assert documented == set(values())


def test_schema_knows_every_value_and_the_defaults_satisfy_it() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = values()
    assert set(defaults) <= set(schema["properties"])
    for key, sub in schema["properties"].items():
        if sub.get("additionalProperties") is False and key in defaults:
            assert set(defaults[key]) <= set(sub["properties"]), key
    assert schema["additionalProperties"] is False
    assert defaults["slack"]["mode"] == "off"  # a string: YAML 1.1 would read a bare off as false


def _chart_readme() -> Any:
    """hack/chart-readme.py as a module (its name is no identifier)."""
    spec = importlib.util.spec_from_file_location("chart_readme", ROOT / "hack" / "chart-readme.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_chart_readme_is_generated_from_the_current_values() -> None:
    readme = _chart_readme()
    assert (CHART / "README.md").read_text() == readme.render(), "run hack/chart-readme.py"
    _, rows = readme.parse((CHART / "values.yaml").read_text())
    by_key = {row.key: row for row in rows}
    # Leaves carry their defaults; a comment lands on the key under it.
    assert by_key["sandbox.prePuller.enabled"].default == "true"
    assert "appVersion" in by_key["sandbox.image.tag"].description
    assert by_key["minio"].default == "" and "Required" in by_key["minio"].description


def test_image_tags_default_to_the_app_version_and_no_default_is_a_local_image() -> None:
    defaults = values()
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] and chart["sources"] and chart["maintainers"]
    for image in (defaults["image"], defaults["sandbox"]["image"]):
        assert image["tag"] == ""  # the templates fall back to .Chart.AppVersion
        assert not image["repository"].startswith("localhost/")
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert helpers.count("tag | default .Chart.AppVersion") == 2


def test_the_controller_image_carries_the_sandbox_libraries_and_no_uv() -> None:
    """controller/agent/prompt.py lists requirements.in found beside the requirements.txt that
    requirements_file() looks for in the package: the image must put both there, and its tag
    (the build script's hash) must change with them."""
    dockerfile = (ROOT / "Dockerfile.controller").read_text()
    assert (
        "COPY sandbox-image/requirements.in sandbox-image/requirements.txt controller/_sandbox/" in dockerfile
    )
    sandbox_env = (ROOT / "controller" / "sandbox_env.py").read_text()
    assert 'here / "_sandbox" / "requirements.txt"' in sandbox_env
    assert (
        'requirements_file().with_name("requirements.in")'
        in (ROOT / "controller" / "agent" / "prompt.py").read_text()
    )
    script = (ROOT / "hack" / "build-controller-image.sh").read_text()
    assert "sandbox-image/requirements.in sandbox-image/requirements.txt" in script
    syncs = [line for line in dockerfile.splitlines() if "uv sync" in line]
    assert len(syncs) == 2 and all("--no-install-package uv" in line for line in syncs)
    assert "COPY --from=build /opt/threadbox /opt/threadbox" in dockerfile  # not /opt/uv


def test_every_setting_the_chart_sets_is_one_the_controller_reads() -> None:
    """A misspelt THREADBOX_* name in the templates would be ignored; Settings forbids only unknown
    fields it is given, and environment variables are never given to it by name."""
    # NOTES.txt is left out: it shows the CLI's own THREADBOX_TOKEN.
    templates = "".join(
        p.read_text() for p in (CHART / "templates").iterdir() if p.suffix in (".yaml", ".tpl")
    )
    named = set(re.findall(r"THREADBOX_([A-Z_]*[A-Z])(?![A-Z_{])", templates))
    looped = re.search(r"\$placement := dict (.+?) }}", templates)
    assert looped, "the placement settings' loop in _helpers.tpl"
    named |= {f"SANDBOX_{key}" for key in re.findall(r'"([A-Z_]+)"', looped[1])}
    assert {"SANDBOX_NODE_SELECTOR", "SANDBOX_EXTRA_ANNOTATIONS", "SANDBOX_IMAGE_PULL_POLICY"} <= named
    assert named - {field.upper() for field in Settings.model_fields} == set()


def test_profiles_render_to_the_file_the_controller_reads_and_the_schema_knows_its_fields() -> None:
    """No helm here: the helper's one expression is checked as written, and what it renders
    (values.yaml's profiles, and an example) is loaded as the controller loads it."""
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    expr = '{{ dict "default" .default "profiles" .definitions "routes" .routes | toJson }}'
    assert f"{{{{- with .Values.profiles }}}}{expr}" in helpers

    def rendered(profiles: dict[str, Any]) -> Any:
        keys = {"default": "default", "profiles": "definitions", "routes": "routes"}
        return json.loads(json.dumps({key: profiles[value] for key, value in keys.items()}))

    assert ProfilesFile.model_validate(rendered(values()["profiles"])) == ProfilesFile()
    example = {
        "default": "standard",
        "definitions": {
            "standard": {},
            "big": {"image": "r/s:2", "memory_limit": "8Gi", "keep_state": False},
        },
        "routes": {"slack/T1": "big"},
    }
    assert ProfilesFile.model_validate(rendered(example)).profiles["big"].keep_state is False
    # The schema's profile fields are the controller's, so a value it passes is one it reads.
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["profiles"]
    fields = schema["properties"]["definitions"]["additionalProperties"]["properties"]
    assert set(fields) == set(ProfileSpec.model_fields)

    configmap = (CHART / "templates" / "profiles.yaml").read_text()
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert 'profiles.json: {{ include "threadbox.profiles" . | quote }}' in configmap
    assert "{name: THREADBOX_PROFILES_FILE, value: /etc/threadbox/profiles/profiles.json}" in deployment
    assert "{name: profiles, mountPath: /etc/threadbox/profiles, readOnly: true}" in deployment
    assert "-profiles}" in deployment.split("configMap:", 1)[1].splitlines()[0]
    # Read at start only: a change must roll the controller.
    assert 'checksum/profiles: {{ include "threadbox.profiles" . | sha256sum }}' in deployment
