"""The sandbox namespace's NetworkPolicies: the default deny, then the allow policy of this controller."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any

from controller.config import Settings
from controller.k8s import objects
from controller.k8s.api import Kube
from controller.k8s.errors import StartFailed
from controller.k8s.names import NETWORK_POLICY_NAME
from controller.k8s.storage import split_endpoint


@dataclass(frozen=True)
class PolicyConfig:
    storage_endpoint: str  # MinIO as pods reach it
    secure: bool
    storage_peer: dict[str, Any] | None  # a policy peer for MinIO; None: its resolved address
    controller_cidrs: tuple[str, ...]
    egress_allow_cidrs: tuple[str, ...]

    @classmethod
    def from_settings(cls, s: Settings) -> PolicyConfig:
        endpoint = s.sandbox_minio_endpoint or s.minio_endpoint
        if not endpoint:
            raise ValueError("backend=kubernetes needs THREADBOX_MINIO_ENDPOINT")
        return cls(
            endpoint,
            s.minio_secure,
            s.sandbox_minio_peer,
            tuple(s.controller_cidrs),
            tuple(s.egress_allow_cidrs),
        )


class Policies:
    def __init__(self, kube: Kube, cfg: PolicyConfig) -> None:
        self.kube = kube
        self.cfg = cfg
        self._allow_ready = False
        self._egress_ready: set[tuple[str, ...]] = set()

    async def ensure_default_deny(self) -> None:
        # An existing one (from the chart or another replica) is left alone: it never changes.
        await self.kube.create(
            self.kube.net.create_namespaced_network_policy, objects.default_deny_policy(self.kube.ns)
        )

    async def ensure_allow(self) -> None:
        """Once per controller: the allow policy exists and says what this controller's settings say."""
        if self._allow_ready:
            return
        c = self.cfg
        host, port = split_endpoint(c.storage_endpoint, c.secure)
        peer = c.storage_peer or objects.ip_peer(await _resolve(host))
        policy = objects.sandbox_network_policy(
            self.kube.ns, list(c.controller_cidrs), (peer, port), list(c.egress_allow_cidrs)
        )
        if await self.kube.create(self.kube.net.create_namespaced_network_policy, policy) is None:
            # Exists: make it match this controller's settings (the last replica to start wins).
            await self.kube.call(
                self.kube.net.replace_namespaced_network_policy, NETWORK_POLICY_NAME, self.kube.ns, policy
            )
        self._allow_ready = True

    async def ensure_for(self, egress: tuple[str, ...]) -> None:
        """What a pod of a profile with this egress allowlist needs before it starts: the allow
        policy, and the allowlist's own policy (made once; its name is its content)."""
        await self.ensure_allow()
        if egress and egress not in self._egress_ready:
            await self.kube.create(
                self.kube.net.create_namespaced_network_policy, objects.egress_policy(self.kube.ns, egress)
            )
            self._egress_ready.add(egress)


async def _resolve(host: str) -> str:
    # A Service name resolves to its ClusterIP, which policies never match (they see the pod IP
    # after the Service rewrote it): in-cluster MinIO needs sandbox_minio_peer.
    try:
        return await asyncio.to_thread(socket.gethostbyname, host)
    except OSError as exc:
        raise StartFailed(f"cannot resolve the MinIO host {host!r} for the network policy: {exc}") from exc
