"""The turn Lease's pure parts: the object it writes and when another replica may take it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.k8s.lease import LEASE_SECONDS, free_for, lease_body, lease_name

NOW = datetime(2026, 11, 22, 9, 0, 0, 123456, tzinfo=UTC)


def test_the_lease_is_named_and_labelled_after_its_thread() -> None:
    body = lease_body("t-abc", "ns", "replica-1", NOW - timedelta(seconds=5), NOW)
    assert body["metadata"]["name"] == lease_name("t-abc") == "tb-turn-t-abc"
    assert body["metadata"]["labels"]["threadbox.dev/thread"] == "t-abc"
    assert body["spec"] == {
        "holderIdentity": "replica-1",
        "leaseDurationSeconds": LEASE_SECONDS,
        "acquireTime": "2026-11-22T08:59:55.123456Z",
        "renewTime": "2026-11-22T09:00:00.123456Z",
    }
    assert "resourceVersion" not in body["metadata"]


def test_an_update_carries_the_version_it_read() -> None:
    assert lease_body("t", "ns", "r", NOW, NOW, "42")["metadata"]["resourceVersion"] == "42"


def _held_by(holder: str, renewed_ago: float) -> dict[str, object]:
    return lease_body("t", "ns", holder, NOW, NOW - timedelta(seconds=renewed_ago))


def test_a_lease_renewed_in_time_belongs_to_its_holder() -> None:
    assert not free_for(_held_by("other", LEASE_SECONDS - 1), "me", NOW)
    assert free_for(_held_by("me", LEASE_SECONDS - 1), "me", NOW)


def test_an_expired_or_unheld_lease_is_free() -> None:
    assert free_for(_held_by("other", LEASE_SECONDS + 1), "me", NOW)
    assert free_for({"spec": {"holderIdentity": ""}}, "me", NOW)
    assert free_for({"spec": {"holderIdentity": "other", "renewTime": "garbage"}}, "me", NOW)
