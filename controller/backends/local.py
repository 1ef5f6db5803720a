"""Local backend: one ipykernel process per thread, from the lean sandbox env.

Each thread gets ``<root>/<thread_id>/`` holding ``workspace/`` (the kernel's
cwd, synced with the store), ``home/`` (HOME, caches, never synced), the
connection file and ``sandbox.json`` (pid), which lets a restarted controller
find the kernel. The kernel's environment is built from scratch: it inherits
nothing from the controller, so no controller secret reaches user code.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

from jupyter_client.connect import LocalPortCache, write_connection_file

from controller.backends.base import SandboxInfo, SandboxStartError
from controller.quotas import Quotas
from controller.stores.base import ThreadStore
from controller.workspace import PersistResult, WorkspaceSync

log = logging.getLogger(__name__)

KERNEL_MODULE = "ipykernel_launcher"
PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # A zombie is dead, and a reused pid is not our kernel.
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and KERNEL_MODULE.encode() in cmdline


class LocalBackend:
    name = "local"
    keep_on_shutdown = False

    def __init__(
        self, root: Path, python: Path, store: ThreadStore, quotas: Quotas, file_ttl_days: float = 0
    ) -> None:
        self.root = root
        self.python = python
        self.store = store
        self.quotas = quotas
        self.ttl = file_ttl_days
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._syncs: dict[str, WorkspaceSync] = {}

    def _dir(self, thread_id: str) -> Path:
        return self.root / thread_id

    def _env(self, home: Path) -> dict[str, str]:
        return {
            "PATH": f"{self.python.parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "TMPDIR": str(home / "tmp"),
            "MPLCONFIGDIR": str(home / ".matplotlib"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
        }

    async def start(self, thread_id: str) -> SandboxInfo:
        base = self._dir(thread_id)
        workspace, home = base / "workspace", base / "home"
        shutil.rmtree(base, ignore_errors=True)  # a fresh kernel starts clean; files come from the store
        (home / "tmp").mkdir(parents=True)
        workspace.mkdir()
        conn_file = base / "kernel.json"
        # Ports reserved process-wide: kernels starting together would otherwise draw the same free
        # port and one would die with "Address already in use" (seen at 50 concurrent starts).
        port = functools.partial(LocalPortCache.instance().find_available_port, "127.0.0.1")
        _, info = write_connection_file(
            str(conn_file),
            ip="127.0.0.1",
            key=secrets.token_hex(32).encode(),
            shell_port=port(),
            iopub_port=port(),
            stdin_port=port(),
            control_port=port(),
            hb_port=port(),
        )
        connection = {k: v.decode() if isinstance(v, bytes) else v for k, v in info.items()}
        with (home / "kernel.log").open("wb") as log:
            try:
                proc = subprocess.Popen(
                    [str(self.python), "-m", KERNEL_MODULE, "-f", str(conn_file)],
                    cwd=workspace,
                    env=self._env(home),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, so stop() kills children too
                )
            except OSError as exc:
                raise SandboxStartError(f"could not start a kernel with {self.python}: {exc}") from exc
        self._procs[proc.pid] = proc
        now = time.time()
        meta = {"pid": proc.pid, "created": now}
        (base / "sandbox.json").write_text(json.dumps(meta))
        return SandboxInfo(thread_id, f"pid-{proc.pid}", connection, now, now, workspace, {"pid": proc.pid})

    def _load(self, thread_id: str) -> SandboxInfo | None:
        base = self._dir(thread_id)
        try:
            meta = json.loads((base / "sandbox.json").read_text())
            connection = json.loads((base / "kernel.json").read_text())
            active = (base / "sandbox.json").stat().st_mtime
        except (OSError, ValueError):
            return None
        pid = int(meta["pid"])
        return SandboxInfo(
            thread_id, f"pid-{pid}", connection, meta["created"], active, base / "workspace", {"pid": pid}
        )

    async def find(self, thread_id: str) -> SandboxInfo | None:
        info = self._load(thread_id)
        return info if info and await self.alive(info) else None

    async def list(self) -> list[SandboxInfo]:
        if not self.root.exists():
            return []
        found = [self._load(p.name) for p in sorted(self.root.iterdir()) if p.is_dir()]
        return [i for i in found if i and await self.alive(i)]

    async def alive(self, info: SandboxInfo) -> bool:
        pid = int(info.extra["pid"])
        proc = self._procs.get(pid)
        if proc is not None:
            return proc.poll() is None
        return _pid_alive(pid)

    def turn_lease(self, thread_id: str) -> None:
        return None  # kernels of this backend belong to this process alone

    async def record(self, info: SandboxInfo, reason: str, message: str, warning: bool = False) -> None:
        log.log(
            logging.WARNING if warning else logging.INFO, "sandbox %s: %s: %s", info.name, reason, message
        )

    async def stop(self, info: SandboxInfo) -> None:
        pid = int(info.extra["pid"])
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            end = time.monotonic() + wait
            while time.monotonic() < end and await self.alive(info):
                await asyncio.sleep(0.05)
            if not await self.alive(info):
                break
        proc = self._procs.pop(pid, None)
        if proc is not None:
            proc.wait(timeout=5)
        self._syncs.pop(info.thread_id, None)
        for name in PORTS:
            LocalPortCache.instance().return_port(int(info.connection[name]))
        shutil.rmtree(self._dir(info.thread_id), ignore_errors=True)

    def _sync(self, info: SandboxInfo, user: str | None) -> WorkspaceSync:
        sync = self._syncs.get(info.thread_id)
        if sync is None or sync.root != info.workspace:
            assert info.workspace is not None
            sync = WorkspaceSync(self.store, info.thread_id, info.workspace, self.quotas, self.ttl, user)
            self._syncs[info.thread_id] = sync
        return sync

    async def restore(self, info: SandboxInfo, user: str | None) -> int:
        return await asyncio.to_thread(self._sync(info, user).restore)

    async def persist(self, info: SandboxInfo, user: str | None) -> PersistResult:
        return await asyncio.to_thread(self._sync(info, user).persist)

    async def write_file(self, info: SandboxInfo, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._sync(info, None).write, name, data)

    async def touch(self, info: SandboxInfo) -> None:
        info.last_active = time.time()
        os.utime(self._dir(info.thread_id) / "sandbox.json", (info.last_active, info.last_active))
