"""The Grafana dashboard as operators need it: datasource, namespace and job variables every
query honours, RED panels for turns and HTTP, USE panels for sandboxes and the pool, one unit
per panel. tests/cluster/test_prometheus.py checks that every query has data."""

from __future__ import annotations

import json
from typing import Any

from tests.support.prometheus import CHART

SCOPE = 'namespace=~"$namespace", job=~"$job"'


def dashboard() -> dict[str, Any]:
    return dict(json.loads((CHART / "dashboards" / "threadbox.json").read_text()))


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def test_datasource_namespace_and_job_variables_scope_every_query() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert {variables[n]["allValue"] for n in ("namespace", "job")} == {".*"}
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            metrics = target["expr"].count("threadbox_") + target["expr"].count("process_")
            assert target["expr"].count(SCOPE) == metrics, (panel["title"], target["expr"])


def test_no_panel_mixes_units() -> None:
    for panel in panels():
        config = panel["fieldConfig"]
        assert config["defaults"]["unit"], panel["title"]
        units = [p for o in config["overrides"] for p in o["properties"] if p["id"] == "unit"]
        assert units == [], panel["title"]


def test_red_panels_for_turns_and_http_and_use_panels_for_sandboxes_and_the_pool() -> None:
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in panels()}

    def has(*needles: str) -> bool:
        return any(all(n in e for n in needles) for e in exprs.values())

    # Rate, errors, duration.
    assert has("rate(threadbox_turns_total") and has("threadbox_turn_errors_total")
    assert has("histogram_quantile", "threadbox_turn_seconds_bucket")
    assert has("rate(threadbox_http_requests_total") and has('status=~"4..|5.."', "http_requests_total")
    assert has("histogram_quantile", "threadbox_http_request_seconds_bucket", "route")
    # Utilization, saturation, errors.
    assert has("threadbox_sandboxes_live") and has("threadbox_queue_length")
    assert has("threadbox_sandbox_start_failures_total")
    assert has("threadbox_warm_pool_size", "threadbox_warm_pool_target")
    assert has("threadbox_warm_pool_claims_total") and has("threadbox_warm_pool_claim_seconds_bucket")
