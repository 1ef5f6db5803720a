"""The in-pod server on port 8888: health, bind, persist, restore, uploads and kernel state.

Stdlib only (ThreadingHTTPServer): the image stays lean and user code's
environment gains no web framework. Every route but ``GET /healthz`` needs
``Authorization: Bearer <kernel key>``; the kernel key is already the secret that
grants code execution in this pod, so it adds no new secret to manage.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from minio.error import S3Error

from controller import kernelstate
from controller.filenames import BadFilename, NameConflict, clean_filename
from controller.kernelstate import Saved, StateError
from controller.quotas import QuotaExceeded, Usage, UserQuota
from controller.stores.base import StoreError
from controller.stores.minio import MinioStore
from controller.workspace import OthersNeeded, PersistResult, WorkspaceSync
from threadbox_sandbox.kernel import KernelSupervisor
from threadbox_sandbox.settings import Settings, SettingsError, Storage, load_storage, parse_storage

log = logging.getLogger("threadbox_sandbox.server")


class NotRestored(Exception):
    """Persisting a workspace that was never restored would delete the thread's stored files."""


class BindConflict(Exception):
    """A warm sandbox serves one thread for life; binding it to another is refused."""


def open_store(storage: Storage) -> MinioStore:
    """A MinioStore on the thread's scoped credentials."""
    return MinioStore.connect(
        storage.endpoint,
        storage.access_key,
        storage.secret_key,
        storage.bucket,
        secure=storage.secure,
        session_token=storage.session_token,
        region=storage.region,
    )


class Workspace:
    """The thread's WorkspaceSync behind one lock (requests arrive on several threads)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.thread_id = settings.thread_id  # None in a warm pod until POST /bind
        self._lock = threading.Lock()
        self._storage: Storage | None = None
        self._bound: Storage | None = None  # from POST /bind, until the Secret mount catches up
        self._sync: WorkspaceSync | None = None
        self._user: UserQuota | None = None  # the last per-user quota the controller sent
        self.state_cap = settings.state_cap  # the last cap for kept state the controller sent
        self.restored = False

    def _load_storage(self) -> Storage:
        # storage.json is re-read on every operation: kubelet refreshes a mounted Secret in
        # place, so rotated (unexpired) STS credentials take effect without a restart. A pod
        # bound by POST /bind uses the credentials it was given until its mount has the file.
        if self._bound is not None and not self.settings.storage_file.exists():
            return self._bound
        return load_storage(self.settings, self.thread_id)

    def _current(self) -> WorkspaceSync:
        storage = self._load_storage()
        if self._sync is None or storage != self._storage:
            store = open_store(storage)
            if self._sync is None:
                s = self.settings
                assert self.thread_id is not None  # load_storage refuses an unbound workspace
                # user=None: these credentials cannot list the user's other threads; per-user
                # quotas come with each persist (UserQuota), counted by the controller.
                self._sync = WorkspaceSync(store, self.thread_id, s.workspace, s.quotas, s.file_ttl_days)
            else:
                self._sync.store = store  # keep what is known to be synced
            self._storage = storage
        return self._sync

    def _restore_locked(self) -> int:
        count = self._current().restore()
        self.restored = True
        return count

    def restore(self) -> int:
        with self._lock:
            return self._restore_locked()

    def bind(self, thread_id: str, storage: Storage) -> int:
        """Give a warm sandbox its thread and credentials, then restore the thread's files.

        Repeating the bind of the same thread is allowed (a controller retrying after a lost
        answer); another thread is refused, so a workspace never mixes two threads' files.
        """
        with self._lock:
            if self.thread_id not in (None, thread_id):
                raise BindConflict(f"this sandbox already serves thread {self.thread_id}")
            self.thread_id, self._bound = thread_id, storage
            return self._restore_locked()

    def persist(self, user: UserQuota | None = None) -> PersistResult:
        """Sync to the store under the controller's per-user ``user`` quota. Without one (the
        final persist on SIGTERM, a controller that does not know the thread's user) the last
        quota sent applies, with the last count of the user's other threads: there is no one to
        ask for a fresh count. A pod never sent a quota applies none (an older controller)."""
        with self._lock:
            if not self.restored:
                raise NotRestored("the workspace was never restored; persisting it could delete stored files")
            if user is not None:
                others = user.others if user.others is not None else self._last_others()
                self._user = replace(user, others=others)
            elif self._user is not None:
                user = replace(self._user, others=self._last_others() or Usage())  # never counted: 0
            return self._current().persist(user)

    def save_state(
        self, kernel: dict[str, Any], cap: int | None, timeout: float = kernelstate.TIMEOUT
    ) -> Saved:
        """The kernel saves its variables to the thread's storage. ``cap`` None (the SIGTERM
        save): the last cap the controller sent, which also says the controller keeps state."""
        with self._lock:
            self.state_cap = self.state_cap if cap is None else cap
            if self.state_cap is None or self.thread_id is None:
                raise StateError("this sandbox was never asked to keep its kernel's state")
            store = self._current().store
            room = kernelstate.room(store, self.thread_id, self.settings.quotas, self.state_cap)
            return kernelstate.save(kernel, store, self.thread_id, self.settings.home, room, timeout)

    def load_state(self, kernel: dict[str, Any], cap: int) -> str | None:
        """Fetch the thread's saved variables and have the kernel load them; the user's line."""
        with self._lock:
            self.state_cap = cap
            assert self.thread_id is not None  # _current() refuses an unbound workspace first
            store = self._current().store
            if not kernelstate.fetch(store, self.thread_id, self.settings.home):
                return None
        return kernelstate.load(kernel)

    def _last_others(self) -> Usage | None:
        return self._user.others if self._user is not None else None

    def write(self, name: str, data: bytes) -> None:
        with self._lock:
            self._current().write(name, data)


def persist_request(data: bytes) -> UserQuota | None:
    """The user quota of a /persist body; an empty body (an older controller's) has none."""
    body = json.loads(data) if data else {}
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    raw = body.get("user_quota")
    return None if raw is None else UserQuota.from_json(raw)


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], token: str, workspace: Workspace, kernel: KernelSupervisor
    ) -> None:
        super().__init__(address, Handler)
        self.token = token.encode()
        self.workspace = workspace
        self.kernel = kernel

    def kernel_connection(self) -> dict[str, Any]:
        """How this pod reaches its own kernel (bound to every address)."""
        return {**self.kernel.connection, "ip": "127.0.0.1"}


class Handler(BaseHTTPRequestHandler):
    server: SandboxServer
    server_version = "threadbox-sandbox"

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The readinessProbe asks every second; only a failing answer is worth a log line.
        if self._path() == "/healthz" and str(code) == "200":
            return
        super().log_request(code, size)

    def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.server.token):
            return True
        self._reply(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong bearer token"})
        return False

    def _path(self) -> str:
        return urlsplit(self.path).path

    def do_GET(self) -> None:
        if self._path() != "/healthz":
            if self._authorized():
                self._reply(HTTPStatus.NOT_FOUND, {"error": "no such route"})
            return
        # Unauthenticated so kubelet's readinessProbe needs no secret in the pod spec; it
        # reveals only whether the kernel process runs.
        kernel = self.server.kernel
        status = HTTPStatus.OK if kernel.running else HTTPStatus.SERVICE_UNAVAILABLE
        self._reply(status, {"kernel": "running" if kernel.running else "down", "launches": kernel.launches})

    def do_POST(self) -> None:
        if not self._authorized():
            return
        route = self._path()
        if route == "/persist":
            self._persist()
        elif route == "/restore":
            self._guarded(lambda: {"restored": self.server.workspace.restore()})
        elif route == "/bind":
            self._bind()
        elif route in ("/state/save", "/state/load"):
            self._state(route)
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": "no such route"})

    def _persist(self) -> None:
        """The body, optional, is ``{"user_quota": {...}}`` (docs/sandbox-pod-contract.md)."""
        size = self._content_length(required=False)
        if size is None:
            return
        try:
            user = persist_request(self.rfile.read(size))
        except ValueError as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"bad persist request: {exc}"})
            return
        self._guarded(lambda: asdict(self.server.workspace.persist(user)))

    def _state(self, route: str) -> None:
        """The body is ``{"max_bytes": n}``: the cap on the kernel's saved variables."""
        size = self._content_length()
        if size is None:
            return
        try:
            cap = int(json.loads(self.rfile.read(size))["max_bytes"])
        except (ValueError, KeyError, TypeError) as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"bad state request: {exc}"})
            return
        workspace, kernel = self.server.workspace, self.server.kernel_connection()
        if route == "/state/save":
            self._guarded(lambda: asdict(workspace.save_state(kernel, cap)))
        else:
            self._guarded(lambda: {"note": workspace.load_state(kernel, cap)})

    def _bind(self) -> None:
        size = self._content_length()
        if size is None:
            return
        try:
            body = json.loads(self.rfile.read(size))
            thread_id = str(body["thread_id"])
            storage = parse_storage(dict(body["storage"]), thread_id)
        except (ValueError, KeyError, TypeError, SettingsError) as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"bad bind request: {exc}"})
            return
        log.info("bound to thread %s", thread_id)
        self._guarded(
            lambda: {"thread_id": thread_id, "restored": self.server.workspace.bind(thread_id, storage)}
        )

    def _content_length(self, required: bool = True) -> int | None:
        length = self.headers.get("Content-Length")
        if length is None and not required:
            return 0
        if length is None or not length.isdigit():
            self._reply(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length is required"})
            return None
        return int(length)

    def do_PUT(self) -> None:
        if not self._authorized():
            return
        route = self._path()
        if not route.startswith("/files/"):
            self._reply(HTTPStatus.NOT_FOUND, {"error": "no such route"})
            return
        try:
            name = clean_filename(unquote(route[len("/files/") :]))
        except BadFilename as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        size = self._content_length()
        if size is None:
            return
        try:
            self.server.workspace.settings.quotas.check_file(name, size)
        except QuotaExceeded as exc:
            self.close_connection = True  # the unread body must not be parsed as a next request
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": str(exc)})
            return
        data = self.rfile.read(size)
        if len(data) != size:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "the body ended early"})
            return

        def write() -> dict[str, Any]:
            self.server.workspace.write(name, data)
            return {"name": name, "size": size}

        self._guarded(write)

    def _guarded(self, action: Callable[[], dict[str, Any]]) -> None:
        """Run a workspace action and map its failures to statuses the controller can act on."""
        try:
            body = action()
        except (NotRestored, BindConflict, NameConflict, StateError) as exc:
            self._reply(HTTPStatus.CONFLICT, {"error": str(exc)})
        except OthersNeeded as exc:  # the controller counts them and asks again
            self._reply(HTTPStatus.PRECONDITION_REQUIRED, {"error": str(exc)})
        except S3Error as exc:
            # AccessDenied / ExpiredToken: the scoped credentials no longer fit; say which.
            log.warning("storage refused the request: %s", exc.code)
            self._reply(HTTPStatus.BAD_GATEWAY, {"error": f"storage refused: {exc.code}: {exc.message}"})
        except StoreError as exc:
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
        except OSError as exc:
            self._reply(HTTPStatus.INSUFFICIENT_STORAGE, {"error": f"workspace write failed: {exc}"})
        except Exception as exc:  # settings errors, bugs: report, never kill the server
            log.exception("pod server action failed")
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}: {exc}"})
        else:
            self._reply(HTTPStatus.OK, body)


def serve(settings: Settings, token: str, workspace: Workspace, kernel: KernelSupervisor) -> SandboxServer:
    """Bind the server's port and serve in a background thread; stop with ``shutdown()``."""
    server = SandboxServer((settings.server_host, settings.server_port), token, workspace, kernel)
    threading.Thread(target=server.serve_forever, name="pod-server-http", daemon=True).start()
    log.info("pod server listening on %s:%d", settings.server_host, settings.server_port)
    return server
