"""The entrypoint's proof that the pod's network policy is in force, against real sockets."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sandbox-image"))  # as the image's PYTHONPATH

from threadbox_sandbox.policy import PolicyNotInForce, probe_target, wait_until_denied


@pytest.fixture
def listening() -> Iterator[tuple[str, int]]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()


def closed_port() -> tuple[str, int]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        return server.getsockname()  # type: ignore[no-any-return]


def test_a_denied_target_passes_at_once() -> None:
    assert wait_until_denied(closed_port(), deadline=5) < 1


def test_positive_control_a_reachable_target_fails_after_the_deadline(listening: tuple[str, int]) -> None:
    started = time.monotonic()
    with pytest.raises(PolicyNotInForce, match=r"not in force after 0.5s: 127\.0\.0\.1:\d+ is reachable"):
        wait_until_denied(listening, deadline=0.5)
    assert time.monotonic() - started < 3


def test_the_target_is_the_api_servers_service_and_required() -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert probe_target(env) == ("10.96.0.1", 443)
    with pytest.raises(PolicyNotInForce, match="outside a Kubernetes pod"):
        probe_target({})
