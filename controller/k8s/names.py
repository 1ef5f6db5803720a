"""Names, labels and annotations shared by every sandbox object (the pod contract)."""

from __future__ import annotations

APP_LABEL = "app.kubernetes.io/name"
SANDBOX_APP = "threadbox-sandbox"
CONTROLLER_APP = "threadbox-controller"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
THREAD_LABEL = "threadbox.dev/thread"
# Warm pool: ``pool`` is "warm" until a claim sets it to "claimed" (with the thread label, in
# one patch); ``profile`` is a hash of the pod settings, so a changed image is never handed out.
POOL_LABEL = "threadbox.dev/pool"
POOL_WARM = "warm"
POOL_CLAIMED = "claimed"
PROFILE_LABEL = "threadbox.dev/profile"
# The sandbox profile (controller/profiles.py) a pod was built from, for people and tests: the
# pool goes by PROFILE_LABEL, which also changes with the server's own pod settings.
PROFILE_NAME_LABEL = "threadbox.dev/profile-name"
PROFILE_VERSION_LABEL = "threadbox.dev/profile-version"
# Pods of a profile with an egress allowlist of its own; its NetworkPolicy selects them.
EGRESS_LABEL = "threadbox.dev/egress"
LAST_ACTIVE_ANNOTATION = "threadbox.dev/last-active"
NETWORK_POLICY_NAME = "threadbox-sandboxes"
EGRESS_POLICY_PREFIX = "threadbox-egress-"
DEFAULT_DENY_NAME = "threadbox-default-deny"
CONTAINER_NAME = "sandbox"


def object_name(thread_id: str) -> str:
    """Pod and Secret name of a thread; thread ids are DNS-1123 safe (controller/identity.py)."""
    return f"tb-{thread_id}"


def warm_name(suffix: str) -> str:
    """Warm pods are anonymous; ``tbw-`` never collides with a thread's ``tb-<id>``."""
    return f"tbw-{suffix}"


def base_labels() -> dict[str, str]:
    return {APP_LABEL: SANDBOX_APP, MANAGED_BY_LABEL: "threadbox"}


def sandbox_labels(thread_id: str) -> dict[str, str]:
    return {**base_labels(), THREAD_LABEL: thread_id}


def warm_labels(profile: str) -> dict[str, str]:
    return {**base_labels(), POOL_LABEL: POOL_WARM, PROFILE_LABEL: profile}


def all_sandboxes_selector() -> str:
    return f"{APP_LABEL}={SANDBOX_APP}"


def thread_selector(thread_id: str) -> str:
    return f"{all_sandboxes_selector()},{THREAD_LABEL}={thread_id}"


def warm_selector() -> str:
    """Unclaimed warm pods of every profile (stale ones are found to be deleted)."""
    return f"{all_sandboxes_selector()},{POOL_LABEL}={POOL_WARM}"
