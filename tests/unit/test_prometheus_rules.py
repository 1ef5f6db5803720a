"""The chart's alerts: valid for promtool, each unit-tested on series written for it, shipped
whole by the PrometheusRule template, and naming only metrics the controller exports."""

from __future__ import annotations

import re

import yaml

from tests.support.prometheus import ALERTS, CHART, ROOT, SCRAPE, promtool
from tests.unit.test_chart_static import exported_metric_names

RULES_TEST = ROOT / "tests" / "prometheus" / "alerts_test.yaml"
WANTED = {
    "ThreadboxWarmPoolEmpty",
    "ThreadboxSandboxStartFailures",
    "ThreadboxPersistFailures",
    "ThreadboxTurnErrorRatio",
    "ThreadboxStorageUnreachable",
    "ThreadboxEventLoopLag",
}


def alerts() -> list[dict[str, object]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_the_rules_pass_promtool_check_and_every_alert_its_unit_test() -> None:
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(RULES_TEST))
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    cases = [t for case in yaml.safe_load(RULES_TEST.read_text())["tests"] for t in case["alert_rule_test"]]
    unit_tested = {t["alertname"] for t in cases}
    firing = {t["alertname"] for t in cases if t["exp_alerts"]}
    assert {a["alert"] for a in alerts()} == WANTED == unit_tested == firing


def test_rules_name_only_exported_metrics() -> None:
    named = {m for rule in alerts() for m in re.findall(r"\bthreadbox_\w+", str(rule["expr"]))}
    assert named and named - exported_metric_names() == set()


def test_the_prometheusrule_template_ships_the_rule_file_whole() -> None:
    template = (CHART / "templates" / "prometheusrule.yaml").read_text()
    assert '.Files.Get "prometheus/alerts.yaml" | nindent 2' in template
    assert "{{- if .Values.prometheusRule.enabled }}" in template
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["prometheusRule"] == {"enabled": False, "labels": {}}


def test_the_documented_scrape_job_keeps_only_the_api_port_of_the_controller_service() -> None:
    job = yaml.safe_load(SCRAPE.read_text())
    [keep] = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert keep["regex"] == "threadbox-controller;http"
    assert {r["target_label"] for r in job["relabel_configs"] if "target_label" in r} >= {"namespace", "job"}
    service = (CHART / "templates" / "service.yaml").read_text()
    assert "- name: http" in service and "threadbox.selectorLabels" in service
