"""The controller's client of the in-pod server (sandbox-image/threadbox_sandbox/server.py).

Every route but ``GET /healthz`` takes the kernel key as its bearer token. The server does
the pod's file sync: ``/bind`` (a warm pod becomes a thread's), ``/restore``, ``/persist`` and
``/files/<name>`` (an upload into the live workspace). A persist carries the per-user quota, whose
count of the user's other threads the pod asks for only when a changed file must be checked.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from http import HTTPStatus
from typing import Any

import httpx

from controller.filenames import NameConflict
from controller.k8s.connection import server_url
from controller.kernelstate import Saved
from controller.quotas import Usage, UserQuota
from controller.workspace import PersistResult

# A cold start can lose up to one wait to this retry (bench/results/start_phases.md), and a
# refused connect costs only a local round trip: retry often.
RESTORE_RETRY_SECONDS = 0.05


@dataclass(frozen=True)
class PodRef:
    """A running sandbox pod as the controller addresses it."""

    name: str
    uid: str
    ip: str
    key: str  # the kernel key, the server's bearer token


class PodServerError(Exception):
    """The in-pod server did not answer, or failed a request: the pod's trouble, not the store's."""

    def __init__(self, message: str, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail  # the server's own sentence, without the pod and route


class PodServer:
    """One HTTP client for the in-pod servers of every sandbox; ``close()`` ends it.

    ``user_quota`` holds the per-user limits that each persist with a known user sends."""

    def __init__(self, user_quota: UserQuota | None = None) -> None:
        self.user_quota = user_quota or UserQuota()
        # Made with the backend, before the event loop runs: a client loads its CA bundle, 20 ms
        # of CPU that took 0.57 s on the loop of a busy controller at its first cold start.
        self._http: httpx.AsyncClient | None = _new_client()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:  # used again after close()
            self._http = _new_client()
        return self._http

    async def request(
        self, pod: PodRef, method: str, path: str, content: bytes | None = None, json: Any = None
    ) -> Any:
        """The server's JSON answer (None if empty); PodServerError if there is none or it failed."""
        headers = {"Authorization": f"Bearer {pod.key}"}
        try:
            resp = await self._client().request(
                method, server_url(pod.ip) + path, headers=headers, content=content, json=json
            )
        except httpx.HTTPError as exc:
            raise PodServerError(f"the in-pod server of {pod.name} did not answer: {exc!r}") from exc
        if resp.status_code >= 400:
            raise PodServerError(
                f"the in-pod server of {pod.name} failed {path}: {resp.status_code} {resp.text[:500]}",
                resp.status_code,
                _sentence(resp),
            )
        return resp.json() if resp.content else None

    async def kernel_launch(self, pod_ip: str) -> int | None:
        """The launch number of the pod's running kernel: 0 if none runs, None if it cannot be asked."""
        try:
            resp = await self._client().get(server_url(pod_ip) + "/healthz", timeout=2)
            body = resp.json()
        except (httpx.HTTPError, ValueError):
            return None  # not up yet (or unreachable): the pod's state decides
        if not isinstance(body, dict):
            return None
        return int(body.get("launches", 0)) if body.get("kernel") == "running" else 0

    async def bind(self, pod: PodRef, thread_id: str, storage: dict[str, Any]) -> None:
        await self.request(pod, "POST", "/bind", json={"thread_id": thread_id, "storage": storage})

    async def restore(self, pod: PodRef) -> int:
        return int((await self.request(pod, "POST", "/restore"))["restored"])

    async def restore_when_up(self, pod: PodRef, timeout: float, alive: Callable[[], Awaitable[bool]]) -> int:
        """``restore``, retried while the pod lives: the in-pod server starts with the kernel, and
        until it listens, connecting is refused."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await self.restore(pod)
            except PodServerError:
                if time.monotonic() > deadline or not await alive():
                    raise
                await asyncio.sleep(RESTORE_RETRY_SECONDS)

    async def persist(self, pod: PodRef, others: Callable[[], Usage] | None = None) -> PersistResult:
        """Sync the pod's workspace under the user quota, ``others`` counting the user's other
        threads (None: the user is unknown, and the pod keeps to the last quota it was sent).

        When the limits need that count, the pod answers 428 before saving any file (it may have
        deleted some), and is asked again with it, counted in a worker thread: it reads the store."""
        try:
            r = await self._persist(pod, self.user_quota if others is not None else None)
        except PodServerError as exc:
            if exc.status != HTTPStatus.PRECONDITION_REQUIRED or others is None:
                raise
            counted = await asyncio.to_thread(others)
            r = await self._persist(pod, replace(self.user_quota, others=counted))
        return PersistResult(
            changed=list(r.get("changed", [])),
            deleted=list(r.get("deleted", [])),
            refused=dict(r.get("refused", {})),
            bytes=int(r.get("bytes", 0)),
        )

    async def _persist(self, pod: PodRef, user: UserQuota | None) -> Any:
        return await self.request(
            pod, "POST", "/persist", json={"user_quota": asdict(user)} if user else None
        )

    async def save_state(self, pod: PodRef, cap: int) -> Saved:
        """The pod's kernel saves its variables to the thread's storage (controller/kernelstate.py)."""
        return Saved.of(await self.request(pod, "POST", "/state/save", json={"max_bytes": cap}), cap)

    async def load_state(self, pod: PodRef, cap: int) -> str | None:
        """The pod fetches the thread's saved variables and its kernel loads them: the user's line.
        The pod keeps ``cap`` for the save it makes by itself on SIGTERM."""
        note = (await self.request(pod, "POST", "/state/load", json={"max_bytes": cap}))["note"]
        return str(note) if note else None

    async def write_file(self, pod: PodRef, name: str, data: bytes) -> None:
        try:
            await self.request(pod, "PUT", "/files/" + urllib.parse.quote(name, safe="/"), data)
        except PodServerError as exc:
            if exc.status == HTTPStatus.CONFLICT:  # a link, folder or file in the way; said in its words
                raise NameConflict(exc.detail) from exc
            raise


def _sentence(resp: httpx.Response) -> str:
    try:
        return str(resp.json()["error"])
    except (ValueError, KeyError, TypeError):
        return resp.text[:500]


def _new_client() -> httpx.AsyncClient:
    # Persisting a large workspace to MinIO can take a while; connecting must not.
    return httpx.AsyncClient(timeout=httpx.Timeout(300, connect=5))
