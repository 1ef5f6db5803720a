"""Per-user quotas on files that code writes, on the real cluster through the real HTTP API.

A pod's credentials reach only its own thread, so the controller counts the user's other
threads when the pod's /persist asks (docs/sandbox-pod-contract.md).
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from tests.cluster.conftest import Cluster
from tests.support.client import create_thread, run

pytestmark = pytest.mark.cluster


def files(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "files"]


def test_code_in_a_second_thread_cannot_write_past_the_users_file_limit(
    cluster: Cluster, k8s_api: Any
) -> None:
    client = k8s_api(user_max_files=3, idle_timeout=8, reap_interval=1)
    user = f"quota-{secrets.token_hex(3)}"
    first, second = create_thread(client, "first", user), create_thread(client, "second", user)
    events = run(client, first, "open('a.txt', 'w').write('a'); open('b.txt', 'w').write('b')")
    assert files(events) == [{"type": "files", "changed": ["a.txt", "b.txt"], "deleted": [], "refused": {}}]

    events = run(client, second, "open('c.txt', 'w').write('c'); open('d.txt', 'w').write('d')")
    refused = {"d.txt": "d.txt: you already have your limit of 3 files"}
    assert files(events) == [{"type": "files", "changed": ["c.txt"], "deleted": [], "refused": refused}]
    store = client.runtime.store
    assert [f.name for f in store.list_files(second)] == ["c.txt"]
    # Reaped when idle: the controller's persist and then the pod's own on SIGTERM keep to it too.
    cluster.wait("the idle pods to be reaped", lambda: not cluster.pods(second), timeout=90)
    assert [f.name for f in store.list_files(second)] == ["c.txt"]
    assert sorted(f.name for f in store.list_files(first)) == ["a.txt", "b.txt"]
