"""The warm pool on the real cluster: fill, claim (one patch), bind, refill, races, fallbacks."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from controller.backends.kubernetes import KubernetesBackend
from controller.backends.pod_sandbox import PodSandbox
from controller.config import Settings
from controller.k8s import objects
from controller.k8s.config import KubernetesConfig
from controller.k8s.names import POOL_LABEL, THREAD_LABEL, warm_selector
from controller.k8s.podserver import PodRef, PodServerError
from controller.metrics import Metrics
from tests.cluster.conftest import Cluster, connected, controller
from tests.support.client import create_thread, run, stdout
from tests.support.metrics import claim_outcomes

pytestmark = pytest.mark.cluster


def _sample(client: Any, name: str, **labels: str) -> float:
    value = client.runtime.metrics.registry.get_sample_value(name, labels)
    return float(value or 0.0)


def _warm_pods(cluster: Cluster) -> list[Any]:
    return list(cluster.core.list_namespaced_pod(cluster.namespace, label_selector=warm_selector()).items)


def _wait_ready(cluster: Cluster, backend: Any, n: int, timeout: float = 90) -> None:
    cluster.wait(f"{n} ready warm pods", lambda: sum(p.ready for p in backend.pools.values()) >= n, timeout)


def test_pool_fills_without_credentials_a_claim_is_a_hit_and_it_refills(
    cluster: Cluster, k8s_api: Any
) -> None:
    client = k8s_api(warm_pool_size=2)
    backend = client.runtime.backend
    _wait_ready(cluster, backend, 2)
    assert _sample(client, "threadbox_warm_pool_size", state="ready") == 2
    assert _sample(client, "threadbox_warm_pool_target") == 2
    warm = _warm_pods(cluster)
    assert len(warm) == 2
    for pod in warm:
        # No thread's identity or credentials before a claim: the Secret has the kernel key only.
        assert THREAD_LABEL not in pod.metadata.labels
        env = {e.name: e.value for e in pod.spec.containers[0].env}
        assert env["THREADBOX_WARM"] == "1" and "THREADBOX_THREAD_ID" not in env
        secret = cluster.core.read_namespaced_secret(pod.metadata.name, cluster.namespace)
        assert set(secret.data) == {"connection.json"}
        assert set(json.loads(base64.b64decode(secret.data["connection.json"]))) >= {"key", "shell_port"}
    warm_names = {p.metadata.name for p in warm}

    tid = create_thread(client, "warm")
    events = run(client, tid, "open('out.txt', 'w').write('warm!'); print(6 * 7)")
    assert stdout(events) == "42\n" and events[-1]["status"] == "ok", events
    assert claim_outcomes(client.runtime.metrics.registry) == {("hit", "claimed"): 1}
    assert _sample(client, "threadbox_sandbox_start_seconds_count", kind="warm") == 1
    assert _sample(client, "threadbox_sandbox_start_seconds_count", kind="cold") == 0
    [pod] = cluster.pods(tid)
    assert pod.metadata.name in warm_names and pod.metadata.labels[POOL_LABEL] == "claimed"
    secret = cluster.core.read_namespaced_secret(pod.metadata.name, cluster.namespace)
    assert secret.metadata.labels[THREAD_LABEL] == tid
    storage = json.loads(base64.b64decode(secret.data["storage.json"]))
    assert storage["prefix"] == f"threads/{tid}/"
    # Persisted with the thread's scoped credentials, under its own prefix only.
    store = client.runtime.store
    assert store.read_file(tid, "out.txt") == b"warm!"
    names = [o.object_name for o in store.client.list_objects(store.bucket, recursive=True)]
    # Under state/ are the controller's own records (usage per user and workspace), not the pod's.
    written = [n for n in names if not n.startswith("state/")]
    assert written and all(n.startswith(f"threads/{tid}/") for n in written), names

    # Found by label like a cold pod; unclaimed warm pods are no thread's sandbox.
    async def look() -> tuple[str | None, list[str]]:
        async with connected(backend.config) as other:
            found = await other.find(tid)
            return found.name if found else None, [i.thread_id for i in await other.list()]

    assert asyncio.run(look()) == (pod.metadata.name, [tid])

    _wait_ready(cluster, backend, 2)  # refilled
    assert len(_warm_pods(cluster)) == 2 and pod.metadata.name not in {
        p.metadata.name for p in _warm_pods(cluster)
    }


def test_restarted_controller_adopts_a_claimed_pod_and_a_returning_thread_gets_its_files(
    cluster: Cluster, k8s_settings: Any
) -> None:
    # The idle timeout is the thread's profile's, pinned at its first start: the same for both.
    settings = k8s_settings(warm_pool_size=1, idle_timeout=6)
    with controller(settings) as first:
        _wait_ready(cluster, first.runtime.backend, 1)
        tid = create_thread(first, "back")
        run(first, tid, "open('keep.txt', 'w').write('kept'); state = 41")
        assert claim_outcomes(first.runtime.metrics.registry) == {("hit", "claimed"): 1}
        [claimed] = cluster.pods(tid)
    with controller({**settings, "reap_interval": 1}) as second:
        # The same pod and kernel: adopted by its labels, though its name is a pool name.
        assert stdout(run(second, tid, "print(state + 1)")) == "42\n"
        assert _sample(second, "threadbox_sandbox_start_seconds_count", kind="adopted") == 1
        assert [p.metadata.uid for p in cluster.pods(tid)] == [claimed.metadata.uid]
        # Reaped when idle (files and variables saved), then back: a new warm pod, the files
        # restored at bind and the variables before the first turn (issue 15's kept state).
        cluster.wait("the idle pod to be reaped", lambda: not cluster.pods(tid), timeout=60)
        _wait_ready(cluster, second.runtime.backend, 1)
        events = run(second, tid, "print(open('keep.txt').read(), state)")
        assert stdout(events) == "kept 41\n", events
        assert _sample(second, "threadbox_sandbox_start_seconds_count", kind="warm") == 1
        [again] = cluster.pods(tid)
        assert again.metadata.uid != claimed.metadata.uid and again.metadata.name.startswith("tbw-")


def test_empty_pool_falls_back_to_cold_and_counts_the_miss(cluster: Cluster, k8s_api: Any) -> None:
    client = k8s_api(warm_pool_size=1)
    tid = create_thread(client, "cold")
    # Right after start-up the pool has nothing ready yet.
    assert stdout(run(client, tid, "print('cold')")) == "cold\n"
    assert _sample(client, "threadbox_warm_pool_claims_total", result="miss", reason="empty") == 1
    assert _sample(client, "threadbox_sandbox_start_seconds_count", kind="cold") == 1
    [pod] = cluster.pods(tid)
    assert pod.metadata.name == f"tb-{tid}"


PREIMPORTED = "import sys; print('colorsys' in sys.modules, 'colorsys' in dir())"


def test_a_warm_pods_kernel_has_its_preimports_loaded_and_a_cold_one_not(
    cluster: Cluster, k8s_api: Any
) -> None:
    client = k8s_api(warm_pool_size=1, warm_preimport="colorsys")
    cold = create_thread(client, "cold")  # before the pool is ready: a cold start imports nothing
    assert stdout(run(client, cold, PREIMPORTED)) == "False False\n"
    _wait_ready(cluster, client.runtime.backend, 1)
    warm = create_thread(client, "warm")
    assert stdout(run(client, warm, PREIMPORTED)) == "True False\n"  # loaded, and no name bound
    [pod] = cluster.pods(warm)
    assert pod.metadata.name.startswith("tbw-")


def test_a_changed_profile_replaces_stale_warm_pods(cluster: Cluster, k8s_settings: Any) -> None:
    with controller(k8s_settings(warm_pool_size=1)) as old:
        _wait_ready(cluster, old.runtime.backend, 1)
        [stale] = _warm_pods(cluster)
    with controller(k8s_settings(warm_pool_size=1, sandbox_cpu_limit="900m")) as new:
        _wait_ready(cluster, new.runtime.backend, 1)
        cluster.wait(
            "the stale warm pod to be deleted",
            lambda: stale.metadata.name not in {p.metadata.name for p in _warm_pods(cluster)},
            timeout=60,
        )
        [fresh] = _warm_pods(cluster)
        assert fresh.spec.containers[0].resources.limits["cpu"] == "900m"


def test_two_replicas_claiming_at_once_never_share_a_pod(cluster: Cluster, k8s_settings: Any) -> None:
    settings = Settings(**k8s_settings(warm_pool_size=2))

    async def scenario() -> tuple[list[PodSandbox], list[Metrics]]:
        replicas = [KubernetesBackend(KubernetesConfig.from_settings(settings)) for _ in range(2)]
        metrics = [Metrics() for _ in replicas]
        for backend, m in zip(replicas, metrics, strict=True):
            await backend.open(m)
        infos: list[PodSandbox] = []
        try:
            for _ in range(360):
                if all(sum(p.ready for p in b.pools.values()) >= 2 for b in replicas):
                    break
                await asyncio.sleep(0.25)
            else:
                raise AssertionError("the replicas never both saw 2 ready warm pods")
            before = {p.metadata.name: p.metadata.resource_version for p in _warm_pods(cluster)}
            starts = [
                replicas[i % 2].start(f"race-{i}", replicas[i % 2].config.profiles[0]) for i in range(4)
            ]
            infos = list(await asyncio.gather(*starts))
        finally:
            for info in infos:
                if info.warm is not None:
                    info.warm.close()
            for backend in replicas:
                await backend.close()
        # The claim's precondition: a patch carrying a version seen before the claim is refused.
        name = next(i.name for i in infos if i.name in before)
        with pytest.raises(ApiException) as refused:
            patch = objects.claim_patch("race-late", before[name], time.time())
            cluster.core.patch_namespaced_pod(name, cluster.namespace, patch)
        assert refused.value.status == 409
        return infos, metrics

    infos, metrics = asyncio.run(scenario())
    names = [info.name for info in infos]
    assert len(set(names)) == 4, names
    for i, info in enumerate(infos):
        assert [p.metadata.name for p in cluster.pods(f"race-{i}")] == [info.name]

    outcomes = claim_outcomes(*(m.registry for m in metrics))
    hits, misses = (sum(v for (r, _), v in outcomes.items() if r == result) for result in ("hit", "miss"))
    warm = [n for n in names if n.startswith("tbw-")]
    assert hits == len(warm) and 1 <= len(warm) <= 2, (names, outcomes)
    assert misses == 4 - len(warm), outcomes


def test_a_claim_from_a_cached_copy_behind_the_pod_reads_it_again_and_still_hits(
    cluster: Cluster, k8s_settings: Any
) -> None:
    # A pod's status written after the pool connected (its Ready condition) makes the cached
    # copy stale: the claim's precondition fails on our own out-of-date view, not a rival.
    settings = Settings(**k8s_settings(warm_pool_size=1))
    metrics = Metrics()

    async def scenario() -> PodSandbox:
        backend = KubernetesBackend(KubernetesConfig.from_settings(settings))
        await backend.open(metrics)
        try:
            while sum(p.ready for p in backend.pools.values()) < 1:
                await asyncio.sleep(0.25)
            [pool] = backend.pools.values()
            [name] = [p.metadata.name for p in _warm_pods(cluster)]
            behind = pool._cache[name]
            patch = {"metadata": {"annotations": {"threadbox.dev/test": "moved-on"}}}
            cluster.core.patch_namespaced_pod(name, cluster.namespace, patch)
            while pool._cache[name]["metadata"]["resourceVersion"] == behind["metadata"]["resourceVersion"]:
                await asyncio.sleep(0.05)  # the watch brought the new version
            pool._cache[name] = behind
            info = await backend.start("stale", backend.config.profiles[0])
            await backend.stop(info)
        finally:
            await backend.close()
        return info

    info = asyncio.run(asyncio.wait_for(scenario(), 240))
    assert info.kind == "warm" and info.name.startswith("tbw-"), info
    hits = metrics.registry.get_sample_value(
        "threadbox_warm_pool_claims_total", {"result": "hit", "reason": "claimed"}
    )
    assert hits == 1


def test_a_failed_bind_removes_the_claimed_pod_and_falls_back_to_cold(
    cluster: Cluster, k8s_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(**k8s_settings(warm_pool_size=1))
    metrics = Metrics()

    async def scenario() -> tuple[PodSandbox, str]:
        backend = KubernetesBackend(KubernetesConfig.from_settings(settings))
        await backend.open(metrics)

        async def refuse_bind(pod: PodRef, thread_id: str, storage: dict[str, Any]) -> None:
            raise PodServerError("injected: the in-pod server refused the bind")

        monkeypatch.setattr(backend.server, "bind", refuse_bind)
        try:
            while sum(p.ready for p in backend.pools.values()) < 1:
                await asyncio.sleep(0.25)
            [warm] = [p.metadata.name for p in _warm_pods(cluster)]
            info = await backend.start("bindfail", backend.config.profiles[0])
            await backend.stop(info)
        finally:
            await backend.close()
        return info, warm

    info, warm = asyncio.run(asyncio.wait_for(scenario(), 240))
    assert info.name == "tb-bindfail" and info.kind == "cold" and info.warm is None
    value = metrics.registry.get_sample_value(
        "threadbox_warm_pool_claims_total", {"result": "miss", "reason": "bind_failed"}
    )
    assert value == 1
    # The claimed pod carried the thread's label: it must not linger for find() to return.
    cluster.wait(
        "the claimed warm pod to go", lambda: warm not in {p.metadata.name for p in cluster.pods()}, 60
    )
