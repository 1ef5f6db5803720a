"""Proof, before the kernel binds its ports or runs a line of user code, that the pod's
NetworkPolicy is in force.

A CNI applies a policy a moment after the pod's process starts: a fresh pod was seen
unfiltered for up to about a second, long enough for a foreign pod to subscribe to its
kernel's IOPub port and keep that connection once the policy came. So the entrypoint first
connects to an address the policy denies and that answers without it, the API server's
Service, until the connection fails; only then does the kernel start and the pod turn ready.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("threadbox_sandbox.policy")

ATTEMPT_TIMEOUT = 0.3  # a CNI that drops rather than rejects costs this once per start
RETRY_PAUSE = 0.05


class PolicyNotInForce(Exception):
    """The policy did not deny the probe address in time; the message says what to check."""


def probe_target(env: Mapping[str, str]) -> tuple[str, int]:
    """The API server's Service address, which the kubelet gives every pod."""
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port or not port.isdigit():
        raise PolicyNotInForce(
            "THREADBOX_POLICY_CHECK_SECONDS is set but KUBERNETES_SERVICE_HOST/PORT are not: "
            "the network policy cannot be proved outside a Kubernetes pod"
        )
    return host, int(port)


def reachable(target: tuple[str, int], timeout: float = ATTEMPT_TIMEOUT) -> bool:
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError:
        return False
    return True


def wait_until_denied(target: tuple[str, int], deadline: float) -> float:
    """Seconds until ``target`` stopped answering; raises when it still answers after ``deadline``."""
    start = time.monotonic()
    while reachable(target):
        waited = time.monotonic() - start
        if waited > deadline:
            raise PolicyNotInForce(
                f"the network policy was not in force after {deadline:g}s: {target[0]}:{target[1]} "
                "is reachable from the sandbox. Check that the CNI enforces NetworkPolicy"
            )
        time.sleep(RETRY_PAUSE)
    waited = time.monotonic() - start
    log.info("network policy in force after %.2fs (%s:%d denied)", waited, *target)
    return waited
