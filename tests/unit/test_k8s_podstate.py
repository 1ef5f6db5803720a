"""Reading pod state: start-up progress, fast failure reasons, liveness, activity (no cluster)."""

from __future__ import annotations

from typing import Any

from controller.k8s.podstate import alive, created, last_active, start_progress
from controller.k8s.storage import credential_seconds, pod_storage, split_endpoint


def pod(
    phase: str = "Running",
    state: dict[str, Any] | None = None,
    ip: str | None = "10.244.0.9",
    **meta: Any,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if ip:
        status["podIP"] = ip
    if state is not None:
        status["containerStatuses"] = [{"name": "sandbox", "state": state}]
    return {"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z", **meta}, "status": status}


RUNNING = {"running": {"startedAt": "2026-01-01T00:00:01Z"}}


def test_running_with_ip_is_started_and_alive() -> None:
    p = pod(state=RUNNING)
    assert start_progress(p).running and start_progress(p).error is None
    assert alive(p)


def test_pending_is_neither_started_nor_failed() -> None:
    for p in (pod("Pending", ip=None), pod("Pending", {"waiting": {"reason": "ContainerCreating"}}, ip=None)):
        progress = start_progress(p)
        assert not progress.running and progress.error is None and progress.waiting_on
        assert not alive(p)


def test_running_without_ip_is_not_started() -> None:
    assert not start_progress(pod(state=RUNNING, ip=None)).running


def test_image_problems_fail_at_once_with_the_reason() -> None:
    for reason in ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "CreateContainerConfigError"):
        p = pod("Pending", {"waiting": {"reason": reason, "message": "no such image x"}}, ip=None)
        error = start_progress(p).error
        assert error is not None and reason in error and "no such image x" in error


def test_pod_that_ended_or_is_deleted_fails_the_start() -> None:
    ended = pod("Failed", {"terminated": {"reason": "Error", "exitCode": 2}})
    assert "exit code 2" in str(start_progress(ended).error)
    deleted = pod("Pending", ip=None, deletionTimestamp="2026-01-01T00:00:05Z")
    assert "deleted" in str(start_progress(deleted).error)


def test_unschedulable_pod_says_why_it_waits() -> None:
    p = pod("Pending", ip=None)
    p["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "Insufficient cpu"}
    ]
    assert "Insufficient cpu" in start_progress(p).waiting_on


def test_terminating_or_exited_pods_are_not_alive() -> None:
    assert not alive(pod(state=RUNNING, deletionTimestamp="2026-01-01T00:00:05Z"))
    assert not alive(pod(state={"terminated": {"exitCode": 0}}))
    assert not alive(pod("Succeeded", {"terminated": {"exitCode": 0}}))
    assert not alive(pod(state=None))


def test_last_active_from_annotation_else_creation() -> None:
    assert last_active(pod(annotations={"threadbox.dev/last-active": "1700000000.250"})) == 1700000000.25
    assert last_active(pod()) == created(pod()) == 1767225600.0
    assert last_active(pod(annotations={"threadbox.dev/last-active": "garbage"})) == 1767225600.0


def test_storage_endpoint_and_credentials() -> None:
    assert split_endpoint("192.0.2.2:9000") == ("192.0.2.2", 9000)
    assert split_endpoint("[fd00::1]:9000") == ("fd00::1", 9000)
    assert split_endpoint("minio.local", secure=True) == ("minio.local", 443)
    assert credential_seconds(60) == 3600 and credential_seconds(43200) == 43200
    assert credential_seconds(10**8) == 7 * 86400
    payload = pod_storage({"endpoint": "127.0.0.1:9000", "bucket": "b"}, "192.0.2.2:9000")
    assert payload == {"endpoint": "192.0.2.2:9000", "bucket": "b"}
