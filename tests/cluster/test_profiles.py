"""Profiles on the real cluster (issue 15): a running thread keeps its pod and image when its
profile changes, even across a controller restart, until its upgrade; the upgrade brings its
files and variables to a pod of the new image; the warm pool holds pods of the new version only."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.k8s.names import PROFILE_NAME_LABEL, PROFILE_VERSION_LABEL, warm_selector
from tests.cluster.conftest import Cluster, controller
from tests.support.client import run, stdout

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1200)]

NEW_TAG = "profile-upgrade"  # the session's sandbox image under a second name


def ctr(cluster: Cluster, *args: str) -> None:
    tool = str(cluster.kubeconfig.parent / "bin" / "ctr")
    subprocess.run([tool, "-n", "k8s.io", "images", *args], check=True, capture_output=True)


@pytest.fixture
def new_image(cluster: Cluster) -> Iterator[str]:
    image = f"{cluster.image.rsplit(':', 1)[0]}:{NEW_TAG}"
    ctr(cluster, "tag", "--force", cluster.image, image)
    yield image
    ctr(cluster, "rm", image)


def warm_pods(cluster: Cluster) -> list[Any]:
    pods = cluster.core.list_namespaced_pod(cluster.namespace, label_selector=warm_selector()).items
    return [p for p in pods if not p.metadata.deletion_timestamp]


def write(path: Path, image: str) -> None:
    path.write_text(json.dumps({"profiles": {"data": {"image": image, "warm_pool_size": 1}}}))


def test_a_running_thread_keeps_its_image_until_upgrade_and_the_pool_rolls(
    cluster: Cluster, k8s_settings: Any, new_image: str, tmp_path: Path
) -> None:
    path = tmp_path / "profiles.json"
    write(path, cluster.image)
    settings = k8s_settings(profiles_file=path)
    with controller(settings) as http:
        tid = http.post("/threads", json={"name": "kept", "profile": "data"}).json()["id"]
        old = http.get(f"/threads/{tid}/profile").json()["version"]
        assert stdout(run(http, tid, "x = 6 * 7; open('kept.txt', 'w').write('f'); print(x)")) == "42\n"
    [before] = cluster.pods(tid)
    assert before.spec.containers[0].image == cluster.image
    assert before.metadata.labels[PROFILE_NAME_LABEL] == "data"
    assert before.metadata.labels[PROFILE_VERSION_LABEL] == old

    write(path, new_image)
    with controller(settings) as http:
        new = http.get(f"/threads/{tid}/profile").json()["current"]
        assert new != old
        # The running pod is adopted as it is: same pod, old image, the kernel's own variables.
        assert stdout(run(http, tid, "print(x)")) == "42\n"
        [same] = cluster.pods(tid)
        assert same.metadata.uid == before.metadata.uid and same.spec.containers[0].image == cluster.image

        def rolled() -> bool:
            pods = warm_pods(cluster)
            return len(pods) == 1 and all(p.metadata.labels[PROFILE_VERSION_LABEL] == new for p in pods)

        cluster.wait("the warm pool to hold the new version only", rolled, timeout=300)
        assert warm_pods(cluster)[0].spec.containers[0].image == new_image

        moved = http.post(f"/threads/{tid}/upgrade").json()
        assert moved["upgraded"] and moved["stopped"] and moved["changed"] == ["image"], moved
        events = run(http, tid, "print(open('kept.txt').read(), x)")
        assert stdout(events) == "f 42\n", events
        [after] = cluster.pods(tid)
        assert after.metadata.uid != before.metadata.uid
        assert after.spec.containers[0].image == new_image
        assert after.metadata.labels[PROFILE_VERSION_LABEL] == new
        cluster.wait("the pool to refill with the new version", rolled, timeout=300)
