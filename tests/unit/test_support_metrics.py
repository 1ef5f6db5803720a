"""The cluster tests' claim counter reader, checked on real registries without a cluster."""

from __future__ import annotations

from controller.metrics import Metrics
from tests.support.metrics import claim_outcomes


def test_claim_outcomes_sums_each_result_and_reason_over_registries() -> None:
    first, second = Metrics(), Metrics()
    first.pool_claims.labels(result="hit", reason="claimed").inc()
    second.pool_claims.labels(result="hit", reason="claimed").inc()
    second.pool_claims.labels(result="miss", reason="empty").inc()
    assert claim_outcomes(first.registry) == {("hit", "claimed"): 1}
    assert claim_outcomes(first.registry, second.registry) == {("hit", "claimed"): 2, ("miss", "empty"): 1}
    assert claim_outcomes(Metrics().registry) == {}
