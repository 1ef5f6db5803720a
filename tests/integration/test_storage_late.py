"""Issue 17: MinIO starts after the controller. The controller does not exit: it says why it
is not ready, refuses requests with a 503 sentence, makes its bucket once MinIO answers, and
becomes ready by itself.

MinIO comes 60 s after the controller, as the issue's acceptance asks: several times the
retry backoff's 10 s cap (controller/storage.py), so the controller has settled into capped
retries, still serving its 503s, long before storage arrives.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import httpx
import pytest
from minio import Minio

from devkit.client import api_client
from devkit.minio import MinioUnavailable, minio_bin, running_minio
from devkit.ports import free_port
from devkit.procserver import controller_env, running_controller
from tests.support.client import create_thread, run, stdout
from tests.support.poll import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

STORAGE_DELAY = 60.0
ROOT_USER = "threadbox-root"  # devkit/minio.py's root user


def readyz(url: str) -> httpx.Response:
    return httpx.get(f"{url}/readyz", timeout=10)


def storage_up(url: str) -> str:
    [line] = [
        x
        for x in httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
        if x.startswith("threadbox_storage_up ")
    ]
    return line.split()[1]


def test_a_controller_started_before_minio_waits_and_becomes_ready_by_itself(
    tmp_path: Path, sandbox_python: Path
) -> None:
    try:
        minio_bin()  # built (cached) before the clock starts
    except MinioUnavailable as exc:
        pytest.skip(str(exc))
    port, password = free_port(), secrets.token_hex(16)
    endpoint = f"127.0.0.1:{port}"
    minio = {"minio_endpoint": endpoint, "minio_access_key": ROOT_USER, "minio_secret_key": password}
    env = controller_env(tmp_path / "data", sandbox_python, store="minio", minio_bucket="late", **minio)
    with running_controller(env, tmp_path / "controller.log") as ctl, api_client(ctl.url) as client:
        not_ready = readyz(ctl.url)
        assert not_ready.status_code == 503
        assert f"storage is not ready yet (MinIO at {endpoint} is unavailable" in not_ready.json()["detail"]
        assert storage_up(ctl.url) == "0.0"
        refused = client.post("/threads", json={"name": "early"})
        assert refused.status_code == 503, refused.text
        assert refused.json()["detail"].startswith("Storage is unavailable, nothing was changed: ")

        # Still unready, and still serving, for the whole outage: no exit, no crash loop.
        end = time.monotonic() + STORAGE_DELAY
        while time.monotonic() < end:
            assert readyz(ctl.url).status_code == 503
            time.sleep(0.5)

        with running_minio(tmp_path / "minio", port=port, password=password):
            assert wait_until(lambda: readyz(ctl.url).status_code == 200, timeout=30), readyz(ctl.url).text
            assert Minio(endpoint, ROOT_USER, password, secure=False).bucket_exists("late")
            assert storage_up(ctl.url) == "1.0"
            thread = create_thread(client, "late")
            assert stdout(run(client, thread, "print(6 * 7)")) == "42\n"
        assert "Traceback" not in ctl.log.read_text()
