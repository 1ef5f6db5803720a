"""The Kubernetes settings: parsing of CIDR lists and the store requirement (no cluster)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from controller.config import Settings

K8S = {"backend": "kubernetes", "store": "minio", "minio_endpoint": "h:1", "minio_access_key": "a"}


def test_cidr_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADBOX_EGRESS_ALLOW_CIDRS", "203.0.113.0/24, 198.51.100.7/32")
    monkeypatch.setenv("THREADBOX_CONTROLLER_CIDRS", "10.244.0.1/32")
    s = Settings(**K8S, minio_secret_key="s")  # type: ignore[arg-type]
    assert s.egress_allow_cidrs == ["203.0.113.0/24", "198.51.100.7/32"]
    assert s.controller_cidrs == ["10.244.0.1/32"]


def test_bad_cidr_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADBOX_EGRESS_ALLOW_CIDRS", "10.0.0.1/8")
    with pytest.raises(ValidationError, match="egress_allow_cidrs"):
        Settings(**K8S, minio_secret_key="s")  # type: ignore[arg-type]


def test_kubernetes_backend_defaults() -> None:
    s = Settings(**K8S, minio_secret_key="s")  # type: ignore[arg-type]
    assert s.sandbox_image == "localhost/threadbox-sandbox:dev"
    assert s.egress_allow_cidrs == [] and s.runtime_class_name is None
    assert s.active_deadline_seconds >= 900
