"""The pod's view of MinIO: the storage.json payload and the endpoint the NetworkPolicy allows."""

from __future__ import annotations

from typing import Any

# MinIO's AssumeRole accepts 15 minutes to 7 days, but minio-py's AssumeRoleProvider raises
# anything under an hour to an hour. A pod's credentials last its active_deadline_seconds, so
# that setting's floor is this same constant (controller/config.py): the two cannot drift.
MIN_CREDENTIAL_SECONDS = 3600
MAX_CREDENTIAL_SECONDS = 7 * 86400


def split_endpoint(endpoint: str, secure: bool = False) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``, or a bare host) -> (host, port)."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or "]" in port:
        return endpoint.strip("[]"), 443 if secure else 80
    return host.strip("[]"), int(port)


def credential_seconds(active_deadline_seconds: int) -> int:
    """Credentials outlive the pod that uses them (the deadline ends it), within MinIO's range."""
    return max(MIN_CREDENTIAL_SECONDS, min(MAX_CREDENTIAL_SECONDS, active_deadline_seconds))


def pod_storage(credentials: dict[str, Any], pod_endpoint: str) -> dict[str, Any]:
    """storage.json: the scoped credentials, with MinIO's address as pods reach it."""
    return {**credentials, "endpoint": pod_endpoint}
