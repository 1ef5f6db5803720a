"""Profiles on Kubernetes, no cluster needed: the pod of a profile version, its labels and
egress policy, and warm pools that keep only current versions (each pool its own)."""

from __future__ import annotations

from typing import Any

from controller.k8s.names import EGRESS_LABEL, PROFILE_NAME_LABEL, PROFILE_VERSION_LABEL
from controller.k8s.objects import PodConfig, egress_id, egress_policy, profile_hash, sandbox_pod, warm_pod
from controller.profiles import Profiles, ProfilesFile
from tests.unit.test_k8s_objects import TID, settings
from tests.unit.test_pool import NOW, PROFILE, api_pod, cache, decide, env

BASE = PodConfig.from_settings(settings(state_max_bytes=1000))


def profile(name: str, **spec: Any) -> Any:
    found = Profiles.from_file(ProfilesFile.model_validate({"profiles": {name: spec}}), settings())
    return found.get(name)


def test_a_profile_s_pod_has_its_image_resources_runtime_and_labels() -> None:
    gpu = profile("gpu", image="reg/gpu:2", cpu_limit="4", memory_limit="8Gi", runtime_class_name="kata")
    pod = sandbox_pod(TID, BASE.for_profile(gpu), NOW)
    container, labels = pod["spec"]["containers"][0], pod["metadata"]["labels"]
    assert container["image"] == "reg/gpu:2" and pod["spec"]["runtimeClassName"] == "kata"
    assert container["resources"]["limits"]["cpu"] == "4"
    assert container["resources"]["limits"]["memory"] == "8Gi"
    assert labels[PROFILE_NAME_LABEL] == "gpu" and labels[PROFILE_VERSION_LABEL] == gpu.version
    assert EGRESS_LABEL not in labels
    assert env(pod)["THREADBOX_STATE_MAX_BYTES"] == "1000"
    assert "THREADBOX_STATE_MAX_BYTES" not in env(
        sandbox_pod(TID, BASE.for_profile(profile("x", keep_state=False)), NOW)
    )


def test_a_profile_s_egress_allowlist_is_a_policy_of_its_own_over_its_pods() -> None:
    web = profile("web", egress_allow_cidrs=["203.0.113.0/24", "198.51.100.0/24"])
    cfg = BASE.for_profile(web)
    assert warm_pod("tbw-x", cfg, NOW)["metadata"]["labels"][EGRESS_LABEL] == egress_id(cfg.egress)
    policy = egress_policy("sbx", cfg.egress)
    assert policy["metadata"]["name"] == f"threadbox-egress-{egress_id(cfg.egress)}"
    assert policy["spec"]["podSelector"]["matchLabels"][EGRESS_LABEL] == egress_id(cfg.egress)
    assert policy["spec"]["policyTypes"] == ["Egress"]
    assert [p["ipBlock"]["cidr"] for p in policy["spec"]["egress"][0]["to"]] == [
        "198.51.100.0/24",
        "203.0.113.0/24",
    ]
    # The same list in another order is the same policy.
    assert egress_id(("203.0.113.0/24", "198.51.100.0/24")) == egress_id(cfg.egress)


def test_each_version_of_a_profile_has_its_own_warm_pods() -> None:
    one, two = profile("data", image="reg/d:1"), profile("data", image="reg/d:2")
    assert profile_hash(BASE.for_profile(one)) != profile_hash(BASE.for_profile(two))
    assert profile_hash(BASE.for_profile(one)) == profile_hash(
        BASE.for_profile(profile("data", image="reg/d:1"))
    )


def test_pools_leave_each_other_s_pods_alone_and_one_sweeps_old_versions() -> None:
    pods = cache(
        api_pod("tbw-mine"),
        api_pod("tbw-theirs", profile="other"),
        api_pod("tbw-old", profile="old-version"),
    )
    sweeping = decide(pods, target=1, ready={"tbw-mine"}, others={"other"})
    assert sweeping.delete == ["tbw-old"] and sweeping.create == 0
    quiet = decide(pods, target=1, ready={"tbw-mine"}, others={"other"}, sweep=False)
    assert quiet.delete == [] and quiet.create == 0
    theirs = decide(pods, profile="other", target=1, others={PROFILE})
    assert theirs.delete == ["tbw-old"] and theirs.connect == ["tbw-theirs"]
