"""Liveness reads the pod cache, but only believes it when it says the pod runs."""

from __future__ import annotations

from typing import Any

import pytest

from controller.k8s import pods
from controller.k8s.api import Kube
from controller.k8s.liveness import Liveness
from controller.k8s.names import CONTAINER_NAME
from controller.k8s.podcache import PodCache
from controller.k8s.podserver import PodRef, PodServer
from tests.unit.test_k8s_api import unopened_kube


def pod(phase: str, uid: str = "u-1") -> dict[str, Any]:
    state: dict[str, dict[str, Any]] = {"running": {}} if phase == "Running" else {"waiting": {}}
    return {
        "metadata": {"name": "tb-t1", "uid": uid, "labels": {}},
        "status": {"phase": phase, "containerStatuses": [{"name": CONTAINER_NAME, "state": state}]},
    }


class Api:
    """What the API server holds for the pod, and how often it was asked."""

    def __init__(self, current: dict[str, Any] | None) -> None:
        self.current = current
        self.reads = 0

    async def read(self, kube: Kube, name: str) -> dict[str, Any] | None:
        self.reads += 1
        return self.current


@pytest.fixture
def liveness() -> Liveness:
    kube = unopened_kube()
    return Liveness(kube, PodCache(kube), PodServer(), touch_every=30)


async def read_with(
    liveness: Liveness, cached: dict[str, Any] | None, api: Api, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any] | None:
    monkeypatch.setattr(pods, "read", api.read)
    if cached is not None:
        liveness.pod_cache._watch.handlers.changed(cached)  # the test plays the watch
    return await liveness._read(PodRef("tb-t1", "u-1", "10.0.0.5", "key"))


async def test_a_running_pod_in_the_cache_costs_no_api_call(
    liveness: Liveness, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = Api(None)  # would answer "gone": it must not be asked
    assert await read_with(liveness, pod("Running"), api, monkeypatch) == pod("Running")
    assert api.reads == 0


@pytest.mark.parametrize(
    "cached",
    [None, pod("Pending"), pod("Running", uid="u-0")],
    ids=["not-yet-in-the-cache", "still-pending-in-the-cache", "an-older-pod-of-that-name"],
)
async def test_anything_but_running_in_the_cache_is_confirmed_by_the_api_server(
    liveness: Liveness, cached: dict[str, Any] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = Api(pod("Running"))
    assert await read_with(liveness, cached, api, monkeypatch) == pod("Running")
    assert api.reads == 1


@pytest.mark.parametrize("told", [3, None, 0], ids=["told-launch-3", "could-not-ask", "no-kernel-yet"])
async def test_a_launch_told_by_the_claim_pins_the_session_and_spares_the_first_check_its_request(
    liveness: Liveness, told: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    async def kernel_launch(pod_ip: str) -> int | None:
        asked.append(pod_ip)
        return 4  # a relaunch: not the kernel the claim saw

    monkeypatch.setattr(liveness.server, "kernel_launch", kernel_launch)
    liveness.pod_cache._watch.handlers.changed(pod("Running"))
    memo: dict[str, Any] = {}
    liveness.launched("u-1", told, memo)
    alive = await liveness.alive(PodRef("tb-t1", "u-1", "10.0.0.5", "key"), memo)
    if told:  # pinned to what the claim saw, and nothing asked
        assert (alive, asked, memo) == (True, [], {"kernel_launch": 3})
    else:  # nothing known: the first check asks, and pins what it finds
        assert (alive, asked, memo) == (True, ["10.0.0.5"], {"kernel_launch": 4})
