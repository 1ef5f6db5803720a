"""Warm pool: the warm pod and Secret, the claim and bind patches, the profile hash, and the
pool's decisions (what to create, delete and connect; which pod to claim). No cluster needed."""

from __future__ import annotations

import base64
import json
from typing import Any

from controller.k8s.connection import from_secret, new_connection
from controller.k8s.names import (
    LAST_ACTIVE_ANNOTATION,
    POOL_LABEL,
    PROFILE_LABEL,
    THREAD_LABEL,
    thread_selector,
    warm_name,
    warm_selector,
)
from controller.k8s.objects import (
    THREAD_KEY,
    PodConfig,
    bind_secret_patch,
    claim_patch,
    profile_hash,
    sandbox_pod,
    warm_pod,
    warm_secret,
)
from controller.k8s.pool import pick, plan, unclaimed
from tests.unit.test_k8s_objects import TID, settings

CFG = PodConfig.from_settings(settings())
PROFILE = profile_hash(CFG)
NOW = 1_700_000_000.0


def env(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}


def test_profile_hash_changes_with_any_pod_setting_and_only_then() -> None:
    assert profile_hash(PodConfig.from_settings(settings())) == PROFILE
    for change in ({"sandbox_image": "x:2"}, {"sandbox_memory_limit": "3Gi"}, {"max_file_bytes": 1}):
        assert profile_hash(PodConfig.from_settings(settings(**change))) != PROFILE, change
    assert profile_hash(PodConfig.from_settings(settings(warm_pool_size=5))) == PROFILE


def test_warm_pod_is_a_sandbox_pod_without_a_thread() -> None:
    warm, cold = warm_pod("tbw-1", CFG, NOW), sandbox_pod(TID, CFG, NOW)
    labels = warm["metadata"]["labels"]
    assert labels[POOL_LABEL] == "warm" and labels[PROFILE_LABEL] == PROFILE and THREAD_LABEL not in labels
    assert labels["app.kubernetes.io/name"] == "threadbox-sandbox"  # network policy and cleanup cover it
    assert env(warm)["THREADBOX_WARM"] == "1" and "THREADBOX_THREAD_ID" not in env(warm)
    assert {k: v for k, v in env(warm).items() if k != "THREADBOX_WARM"} == {
        k: v for k, v in env(cold).items() if k != "THREADBOX_THREAD_ID"
    }
    assert warm["spec"]["volumes"][0]["secret"]["secretName"] == "tbw-1"
    # Same image, resources and lockdown as a thread's pod: only identity differs.
    wc, cc = warm["spec"]["containers"][0], cold["spec"]["containers"][0]
    assert {k: v for k, v in wc.items() if k != "env"} == {k: v for k, v in cc.items() if k != "env"}
    skip = ("containers", "volumes")
    assert {k: v for k, v in warm["spec"].items() if k not in skip} == {
        k: v for k, v in cold["spec"].items() if k not in skip
    }
    assert warm["spec"]["volumes"][1:] == cold["spec"]["volumes"][1:]


def test_warm_secret_holds_the_kernel_key_only() -> None:
    connection = new_connection()
    secret = warm_secret("tbw-1", CFG, connection)
    assert set(secret["stringData"]) == {"connection.json"}
    assert json.loads(secret["stringData"]["connection.json"]) == connection
    assert secret["metadata"]["labels"][POOL_LABEL] == "warm" and secret["metadata"]["namespace"] == "sbx"


def test_claim_is_one_patch_guarded_by_the_resource_version() -> None:
    patch = claim_patch(TID, "4711", NOW)
    assert patch == {
        "metadata": {
            "resourceVersion": "4711",
            "labels": {THREAD_LABEL: TID, POOL_LABEL: "claimed"},
            "annotations": {LAST_ACTIVE_ANNOTATION: "1700000000.000"},
        }
    }
    # After it, the pod matches the thread's selector and no longer the pool's.
    labels = {**warm_pod("tbw-1", CFG, NOW)["metadata"]["labels"], **patch["metadata"]["labels"]}
    assert _matches(labels, thread_selector(TID)) and not _matches(labels, warm_selector())


def _matches(labels: dict[str, str], selector: str) -> bool:
    return all(labels.get(k) == v for k, v in (term.split("=") for term in selector.split(",")))


def test_bind_records_thread_and_credentials_in_the_secret() -> None:
    storage = {"prefix": f"threads/{TID}/", "access_key": "a"}
    patch = bind_secret_patch(TID, storage)
    assert patch["metadata"]["labels"] == {THREAD_LABEL: TID, POOL_LABEL: "claimed"}
    assert patch["stringData"] == {"storage.json": json.dumps(storage), THREAD_KEY: TID}


def test_connection_from_an_api_secret() -> None:
    connection = new_connection()
    raw = base64.b64encode(json.dumps(connection).encode()).decode()
    assert from_secret({"data": {"connection.json": raw}}) == connection
    assert from_secret({"data": {}}) is None
    assert from_secret({"data": {"connection.json": "bm90IGpzb24="}}) is None
    assert from_secret({}) is None


def api_pod(
    name: str,
    *,
    profile: str = PROFILE,
    running: bool = True,
    created: str = "2023-11-14T22:13:20Z",
    terminating: bool = False,
    waiting: str | None = None,
) -> dict[str, Any]:
    """A warm pod as the API returns it."""
    state: dict[str, Any] = (
        {"running": {}} if running else {"waiting": {"reason": waiting or "ContainerCreating"}}
    )
    meta: dict[str, Any] = {
        "name": name,
        "uid": f"uid-{name}",
        "resourceVersion": "1",
        "creationTimestamp": created,
        "labels": {POOL_LABEL: "warm", PROFILE_LABEL: profile},
    }
    if terminating:
        meta["deletionTimestamp"] = created
    return {
        "metadata": meta,
        "status": {
            "phase": "Running" if running else "Pending",
            "podIP": "10.244.0.9" if running else None,
            "containerStatuses": [{"name": "sandbox", "state": state}],
        },
    }


def cache(*pods: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in pods}


def decide(pods: dict[str, dict[str, Any]], **kw: Any) -> Any:
    args: dict[str, Any] = {
        "profile": PROFILE,
        "target": 2,
        "ready": set(),
        "creating": 0,
        "busy": set(),
        "concurrency": 2,
        "now": NOW,
        "stuck_after": 300,
        **kw,
    }
    return plan(pods, **args)


def test_an_empty_pool_is_filled_up_to_the_refill_concurrency() -> None:
    assert decide({}).create == 2
    assert decide({}, target=5).create == 2
    assert decide({}, creating=1).create == 1
    assert decide({}, target=0).create == 0


def test_starting_pods_count_towards_the_target_and_the_concurrency() -> None:
    pods = cache(api_pod("tbw-a", running=False))
    assert decide(pods).create == 1
    assert decide(pods, concurrency=1).create == 0
    assert decide(pods, target=3, ready={"tbw-a"}).create == 2


def test_running_pods_are_connected_once() -> None:
    pods = cache(api_pod("tbw-a"), api_pod("tbw-b", running=False), api_pod("tbw-c"))
    assert decide(pods, target=3).connect == ["tbw-a", "tbw-c"]
    assert decide(pods, target=3, ready={"tbw-a"}, busy={"tbw-c"}).connect == []


def test_stale_profiles_broken_and_surplus_pods_are_deleted() -> None:
    pods = cache(
        api_pod("tbw-old", profile="0ld"),
        api_pod("tbw-bad", running=False, waiting="ErrImagePull"),
        api_pod("tbw-a"),
        api_pod("tbw-b"),
        api_pod("tbw-c"),
        api_pod("tbw-gone", terminating=True),
    )
    todo = decide(pods, ready={"tbw-a", "tbw-b", "tbw-c"})
    assert todo.delete == ["tbw-bad", "tbw-old", "tbw-c"] and todo.create == 0
    # Replacements for stale pods do not wait for their deletion.
    assert decide(cache(api_pod("tbw-old", profile="0ld"))).create == 2
    # What is being worked on is left alone this pass.
    assert decide(pods, ready={"tbw-a", "tbw-b"}, busy={"tbw-c", "tbw-old"}).delete == ["tbw-bad"]


def test_a_pod_that_never_starts_is_replaced() -> None:
    pods = cache(api_pod("tbw-slow", running=False))
    assert decide(pods, now=NOW + 100).delete == []
    assert decide(pods, now=NOW + 301).delete == ["tbw-slow"]


def test_claims_take_connected_running_pods_of_this_profile_oldest_first() -> None:
    pods = cache(
        api_pod("tbw-new", created="2023-11-14T22:20:00Z"),
        api_pod("tbw-old", created="2023-11-14T22:10:00Z"),
        api_pod("tbw-stale", profile="0ld"),
        api_pod("tbw-dying", terminating=True),
        api_pod("tbw-unconnected"),
    )
    ready = {"tbw-new", "tbw-old", "tbw-stale", "tbw-dying"}
    assert pick(pods, ready, PROFILE) == ["tbw-old", "tbw-new"]
    assert pick(pods, set(), PROFILE) == []


def test_a_pod_read_again_after_a_conflict_is_claimed_only_if_still_the_same_warm_pod() -> None:
    pod = api_pod("tbw-a")
    assert unclaimed(pod, "uid-tbw-a")
    assert not unclaimed(pod, "uid-other")  # deleted and re-created under the same name
    claimed = api_pod("tbw-a")
    claimed["metadata"]["labels"][POOL_LABEL] = "claimed"
    assert not unclaimed(claimed, "uid-tbw-a")  # another controller won it
    assert not unclaimed(api_pod("tbw-a", terminating=True), "uid-tbw-a")


def test_warm_names_never_collide_with_thread_pods() -> None:
    assert warm_name("ab12").startswith("tbw-") and not warm_name("ab12").startswith("tb-")
