"""Outcomes read back from controllers' Prometheus registries, for tests to assert on."""

from __future__ import annotations

from prometheus_client import CollectorRegistry


def claim_outcomes(*registries: CollectorRegistry) -> dict[tuple[str, str], float]:
    """Every warm-pool claim counted by (result, reason), summed over the registries: a failed
    assert on the whole dict shows which outcome happened instead."""
    counted: dict[tuple[str, str], float] = {}
    for registry in registries:
        for family in registry.collect():
            if family.name != "threadbox_warm_pool_claims":
                continue
            for s in family.samples:
                if s.name.endswith("_total"):
                    key = (s.labels["result"], s.labels["reason"])
                    counted[key] = counted.get(key, 0.0) + s.value
    return counted
