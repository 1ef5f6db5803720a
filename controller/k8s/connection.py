"""The kernel's connection info: fixed ports in the pod, the pod IP on the controller's side."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

import zmq

KERNEL_PORTS = {
    "shell_port": 5555,
    "iopub_port": 5556,
    "stdin_port": 5557,
    "control_port": 5558,
    "hb_port": 5559,
}
SERVER_PORT = 8888


def new_connection() -> dict[str, Any]:
    """What goes into the pod's connection.json: the kernel binds every interface of its pod.

    The HMAC key signs messages but hides nothing: anyone who reaches the IOPub port reads a
    thread's code and output. With a CurveZMQ keypair (jupyter_client 8.9+, ipykernel 7.3+)
    the kernel's sockets are CURVE servers, and only a peer holding this Secret's keys can
    connect at all, even on a CNI that enforces policies late.
    """
    public, secret = zmq.curve_keypair()
    return {
        **KERNEL_PORTS,
        "ip": "0.0.0.0",
        "transport": "tcp",
        "signature_scheme": "hmac-sha256",
        "key": secrets.token_hex(32),
        "kernel_name": "python3",
        "curve_publickey": public.decode("ascii"),
        "curve_secretkey": secret.decode("ascii"),
    }


def from_secret(secret: dict[str, Any]) -> dict[str, Any] | None:
    """The connection info in a sandbox Secret as the API returns it; None if missing or mangled."""
    try:
        info = json.loads(base64.b64decode(secret["data"]["connection.json"]))
    except (KeyError, TypeError, ValueError):
        return None
    return dict(info) if isinstance(info, dict) else None


def for_pod(connection: dict[str, Any], pod_ip: str) -> dict[str, Any]:
    """The same info as the controller must use it: 0.0.0.0 is where the kernel listens, not where to dial."""
    return {**connection, "ip": pod_ip}


def server_url(pod_ip: str) -> str:
    return f"http://{pod_ip}:{SERVER_PORT}"
