"""Events on sandbox pods: the object the controller writes."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.k8s.events import pod_event

NOW = datetime(2026, 11, 22, 9, 30, 5, tzinfo=UTC)


def test_an_event_points_at_its_pod_and_says_why() -> None:
    event = pod_event("ns", "tb-t1", "uid-1", "Reaped", "idle for 900s; files persisted", NOW, warning=False)
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "tb-t1",
        "namespace": "ns",
        "uid": "uid-1",
    }
    assert (event["reason"], event["type"], event["lastTimestamp"]) == (
        "Reaped",
        "Normal",
        "2026-11-22T09:30:05Z",
    )
    assert event["metadata"]["name"].startswith("tb-t1.")


def test_warnings_are_typed_and_long_messages_cut() -> None:
    event = pod_event("ns", "p", "u", "KernelDied", "x" * 5000, NOW, warning=True)
    assert event["type"] == "Warning"
    assert len(event["message"]) == 1024
    assert pod_event("ns", "p", "u", "R", "m", NOW, False)["metadata"]["name"] != event["metadata"]["name"]
