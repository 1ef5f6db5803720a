"""Idle sandboxes are reaped after persisting to MinIO, and come back restored."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.client import create_thread, run, stdout
from tests.support.poll import wait_until

pytestmark = pytest.mark.integration


def minio_settings(minio: Any, bucket: str) -> dict[str, Any]:
    return {
        "store": "minio",
        "minio_endpoint": minio.endpoint,
        "minio_access_key": minio.access_key,
        "minio_secret_key": minio.secret_key,
        "minio_bucket": bucket,
    }


def test_idle_sandbox_is_persisted_to_minio_then_reaped_then_restored(api: Any, minio: Any) -> None:
    client = api(idle_timeout=2, reap_interval=0.3, **minio_settings(minio, "reap"))
    manager = client.runtime.manager
    tid = create_thread(client, "idle")
    run(client, tid, "import pandas as pd\npd.DataFrame({'x': [1, 2, 3]}).to_csv('data.csv', index=False)")
    workspace = manager._live[tid].info.workspace
    assert manager.is_live(tid)
    # A long execution is activity: it must not be reaped while running, though it outlasts idle_timeout.
    assert stdout(run(client, tid, "import time; time.sleep(3); print('still here')")) == "still here\n"
    # Gone: no longer live, and its workspace removed (after persisting, so wait for both).
    assert wait_until(lambda: not manager.is_live(tid) and not workspace.exists(), timeout=15)
    raw = minio.store("reap").read_file(tid, "data.csv")  # straight from MinIO, not via threadbox
    assert raw == b"x\n1\n2\n3\n"
    events = run(client, tid, "import pandas as pd; print(pd.read_csv('data.csv').x.sum())")
    assert [e["phase"] for e in events if e["type"] == "status"][:1] == ["starting"]
    assert stdout(events) == "6\n"
    metrics = client.get("/metrics").text
    assert 'threadbox_sandboxes_reaped_total{reason="idle"} 1.0' in metrics


def test_minio_outage_keeps_output_reports_clearly_and_recovers_by_itself(api: Any, tmp_path: Any) -> None:
    from devkit.minio import running_minio

    with running_minio(tmp_path / "m") as server:
        client = api(**minio_settings(server, "outage"))
        tid = create_thread(client, "outage")
        assert stdout(run(client, tid, "x = 5; print('up')")) == "up\n"
    # MinIO is down now: the turn's output still arrives, and the user is told files were not saved.
    events = run(client, tid, "open('f.txt', 'w').write('f'); print(x * 2)")
    assert stdout(events) == "10\n"
    [err] = [e for e in events if e["type"] == "error"]
    assert err["ename"] == "PersistFailed" and "could not be saved" in err["evalue"]
    resp = client.get(f"/threads/{tid}/files")
    assert resp.status_code == 503 and "Storage is unavailable" in resp.json()["detail"]
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200
    # MinIO comes back (same data, port and keys): no restart of anything, and nothing was lost.
    port = int(server.endpoint.rsplit(":", 1)[1])
    with running_minio(tmp_path / "m", port=port, password=server.secret_key):
        events = run(client, tid, "print(x + 1)")
        assert stdout(events) == "6\n" and [e["changed"] for e in events if e["type"] == "files"] == [
            ["f.txt"]
        ]
        assert client.get("/readyz").status_code == 200
        assert client.get(f"/threads/{tid}/files/f.txt").content == b"f"
