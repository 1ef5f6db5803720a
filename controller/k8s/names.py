"""Names, labels and annotations shared by every sandbox object (the pod contract)."""

from __future__ import annotations

APP_LABEL = "app.kubernetes.io/name"
SANDBOX_APP = "threadbox-sandbox"
CONTROLLER_APP = "threadbox-controller"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
THREAD_LABEL = "threadbox.dev/thread"
LAST_ACTIVE_ANNOTATION = "threadbox.dev/last-active"
NETWORK_POLICY_NAME = "threadbox-sandboxes"
CONTAINER_NAME = "sandbox"


def object_name(thread_id: str) -> str:
    """Pod and Secret name of a thread; thread ids are DNS-1123 safe (controller/identity.py)."""
    return f"tb-{thread_id}"


def sandbox_labels(thread_id: str) -> dict[str, str]:
    return {APP_LABEL: SANDBOX_APP, MANAGED_BY_LABEL: "threadbox", THREAD_LABEL: thread_id}


def all_sandboxes_selector() -> str:
    return f"{APP_LABEL}={SANDBOX_APP}"


def thread_selector(thread_id: str) -> str:
    return f"{all_sandboxes_selector()},{THREAD_LABEL}={thread_id}"
