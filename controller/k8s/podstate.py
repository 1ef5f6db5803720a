"""Reading a sandbox pod's state from its manifest (the API's JSON, camelCase keys).

Pure functions, so start-up failure detection and liveness are unit-testable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.k8s.names import CONTAINER_NAME, LAST_ACTIVE_ANNOTATION, POOL_LABEL, POOL_WARM, THREAD_LABEL

# Waiting reasons that will not fix themselves in a start timeout's time: fail the start at
# once with the reason, rather than hanging until the timeout.
FATAL_WAITING = {
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "CrashLoopBackOff",
}


@dataclass(frozen=True)
class StartProgress:
    running: bool  # Running, with an IP, container started: the kernel can be dialled
    error: str | None  # the pod cannot start; why, in words
    waiting_on: str  # what it is waiting for, for a timeout message


def _meta(pod: dict[str, Any]) -> dict[str, Any]:
    return pod.get("metadata") or {}


def _status(pod: dict[str, Any]) -> dict[str, Any]:
    return pod.get("status") or {}


def uid(pod: dict[str, Any]) -> str:
    return str(_meta(pod).get("uid", ""))


def thread_of(pod: dict[str, Any]) -> str:
    return str((_meta(pod).get("labels") or {}).get(THREAD_LABEL, ""))


def warm(pod: dict[str, Any]) -> bool:
    """An unclaimed warm pod (of any profile): what names.warm_selector() selects."""
    return (_meta(pod).get("labels") or {}).get(POOL_LABEL) == POOL_WARM


def pod_ip(pod: dict[str, Any]) -> str | None:
    ip = _status(pod).get("podIP")
    return str(ip) if ip else None


def terminating(pod: dict[str, Any]) -> bool:
    return bool(_meta(pod).get("deletionTimestamp"))


def parse_time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def created(pod: dict[str, Any]) -> float:
    stamp = _meta(pod).get("creationTimestamp")
    return parse_time(stamp) if stamp else 0.0


def last_active(pod: dict[str, Any]) -> float:
    value = (_meta(pod).get("annotations") or {}).get(LAST_ACTIVE_ANNOTATION)
    try:
        return float(str(value))
    except ValueError:
        return created(pod)  # missing or mangled: as old as the pod, so it can still be reaped


def _container_state(pod: dict[str, Any]) -> dict[str, Any]:
    for cs in _status(pod).get("containerStatuses") or []:
        if cs.get("name") == CONTAINER_NAME:
            return dict(cs.get("state") or {})
    return {}


def alive(pod: dict[str, Any]) -> bool:
    """Running, not being deleted, and its container has not terminated."""
    state = _container_state(pod)
    return (
        _status(pod).get("phase") == "Running"
        and not terminating(pod)
        and "running" in state
        and "terminated" not in state
    )


def _terminated_text(state: dict[str, Any]) -> str:
    term = state.get("terminated") or {}
    parts = [str(term.get(k)) for k in ("reason", "message") if term.get(k)]
    code = term.get("exitCode")
    return ", ".join([*parts, f"exit code {code}"] if code is not None else parts) or "no reason given"


def start_progress(pod: dict[str, Any]) -> StartProgress:
    status = _status(pod)
    phase = status.get("phase", "Pending")
    state = _container_state(pod)
    if terminating(pod):
        return StartProgress(False, "the sandbox pod was deleted while starting", "deletion")
    if phase in ("Failed", "Succeeded"):
        reason = status.get("reason") or ""
        detail = status.get("message") or _terminated_text(state)
        return StartProgress(
            False, f"the sandbox pod ended while starting ({reason or phase}: {detail})", phase
        )
    waiting = state.get("waiting") or {}
    if waiting.get("reason") in FATAL_WAITING:
        message = waiting.get("message") or ""
        return StartProgress(
            False, f"the sandbox container cannot start: {waiting['reason']} {message}".strip(), ""
        )
    if "terminated" in state:
        return StartProgress(
            False, f"the sandbox container exited while starting ({_terminated_text(state)})", ""
        )
    if phase == "Running" and pod_ip(pod) and "running" in state:
        return StartProgress(True, None, "")
    return StartProgress(False, None, _waiting_on(status, waiting))


def _waiting_on(status: dict[str, Any], waiting: dict[str, Any]) -> str:
    if waiting.get("reason"):
        return f"container {waiting['reason']}"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return f"scheduling ({cond.get('reason')}: {cond.get('message')})"
    return f"phase {status.get('phase', 'Pending')}"
