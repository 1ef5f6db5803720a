"""Local backend: one ipykernel process per thread, from the lean sandbox env, sandboxed.

Each thread gets ``<root>/<thread_id>/`` holding ``workspace/`` (the kernel's cwd, synced
with the store), ``home/`` (HOME, caches, never synced), ``kernel.log`` and
``sandbox.json`` (pid and run folder), which lets a restarted controller find the kernel.
The kernel's environment is built from scratch, so no controller variable reaches user
code; how the kernel is confined (bubblewrap, limits) is in ``local_sandbox.py``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller import kernelstate
from controller.backends.base import Dialer, NoLease, SandboxInfo, Session
from controller.backends.bwrap import sandbox_uid
from controller.backends.local_sandbox import KERNEL_MODULE, Launcher, Prepared, chown_tree, run_parent
from controller.kernelstate import Saved
from controller.metrics import Metrics
from controller.profiles import Profile
from controller.quotas import Quotas
from controller.stores.base import ThreadStore
from controller.workspace import PersistResult, WorkspaceSync

log = logging.getLogger(__name__)

STOP_WAIT = 5.0


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # A zombie is dead, and a reused pid is not our kernel.
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and KERNEL_MODULE.encode() in cmdline


def _clear(*folders: Path) -> None:
    """Remove what a previous kernel left; a fresh kernel starts clean, its files come from the store."""
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(kw_only=True)
class ProcessSandbox(SandboxInfo):
    pid: int


class LocalBackend:
    name = "local"
    keep_on_release = False

    def __init__(
        self, root: Path, launcher: Launcher, store: ThreadStore, quotas: Quotas, file_ttl_days: float = 0
    ) -> None:
        self.root = root
        self.launcher = launcher
        self.store = store
        self.quotas = quotas
        self.ttl = file_ttl_days
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._syncs: dict[str, WorkspaceSync] = {}

    @property
    def isolation(self) -> str:
        return self.launcher.isolation.describe()

    @property
    def isolated(self) -> bool:
        return self.launcher.isolation.sandboxed

    def _dir(self, thread_id: str) -> Path:
        return self.root / thread_id

    async def open(self, metrics: Metrics) -> None:
        """Kernels left by a controller that crashed: nobody can adopt them (the next turn starts
        fresh), so their files are saved and they are stopped."""
        for info in await self.list():
            log.warning("stopping orphaned sandbox %s of thread %s", info.name, info.thread_id)
            try:
                await self.persist(info, None)
            except Exception:
                log.exception("could not save the files of orphaned sandbox %s", info.name)
            await self.stop(info)

    async def close(self) -> None:
        return None

    async def start(self, thread_id: str, profile: Profile) -> ProcessSandbox:
        """A profile's image, resources, runtime class and egress are for pods: a local kernel
        has the lean sandbox env and the ``local_*`` limits whatever its profile."""
        base = self._dir(thread_id)
        run = run_parent(self.root) / thread_id
        prepared = await asyncio.to_thread(self._prepare, thread_id, base, run)
        spawned = self.launcher.launch(prepared, base / "kernel.log")  # on the loop thread, see launch()
        proc = spawned.proc
        self._procs[proc.pid] = proc
        now = time.time()
        # The controller's own copy of the connection: the kernel may rewrite the file in its run folder.
        meta = {"pid": proc.pid, "created": now, "connection": spawned.connection}
        (base / "sandbox.json").write_text(json.dumps(meta))
        return ProcessSandbox(
            thread_id, f"pid-{proc.pid}", spawned.connection, now, now, base / "workspace", pid=proc.pid
        )

    def _load(self, thread_id: str) -> ProcessSandbox | None:
        base = self._dir(thread_id)
        try:
            meta = json.loads((base / "sandbox.json").read_text())
            active = (base / "sandbox.json").stat().st_mtime
            pid = int(meta["pid"])
            return ProcessSandbox(
                thread_id,
                f"pid-{pid}",
                meta["connection"],
                meta["created"],
                active,
                base / "workspace",
                "adopted",
                pid=pid,
            )
        except (OSError, ValueError, KeyError):
            return None

    def _prepare(self, thread_id: str, base: Path, run: Path) -> Prepared:
        _clear(base, run)  # a big stale workspace would stall the loop: this runs in a worker thread
        base.mkdir(parents=True)
        return self.launcher.prepare(thread_id, base, run)

    async def find(self, thread_id: str) -> ProcessSandbox | None:
        info = self._load(thread_id)
        return info if info and await self.alive(info) else None

    async def list(self) -> list[ProcessSandbox]:
        if not self.root.exists():
            return []
        found = [self._load(p.name) for p in sorted(self.root.iterdir()) if p.is_dir()]
        return [i for i in found if i and await self.alive(i)]

    async def ready(self, info: ProcessSandbox, user: str | None, dialer: Dialer) -> Session:
        restore = functools.partial(self.restore, info, user)
        return await dialer.ready(info, functools.partial(self.alive, info), restore)

    async def alive(self, info: ProcessSandbox) -> bool:
        proc = self._procs.get(info.pid)
        if proc is not None:
            return proc.poll() is None
        return _pid_alive(info.pid)

    def turn_lease(self, thread_id: str) -> NoLease:
        return NoLease()  # kernels of this backend belong to this process alone

    async def record(self, info: ProcessSandbox, reason: str, message: str, warning: bool = False) -> None:
        log.log(
            logging.WARNING if warning else logging.INFO, "sandbox %s: %s: %s", info.name, reason, message
        )

    async def release(self, info: ProcessSandbox) -> None:
        await self.stop(info)  # a kernel process does not outlive its controller usefully

    async def stop(self, info: ProcessSandbox) -> None:
        pid = info.pid
        self.launcher.kill(info.thread_id, pid)
        end = time.monotonic() + STOP_WAIT
        while time.monotonic() < end and await self.alive(info):
            await asyncio.sleep(0.02)  # polling: a killed process gives no awaitable signal
        proc = self._procs.pop(pid, None)
        if proc is not None:
            try:
                await asyncio.to_thread(proc.wait, STOP_WAIT)
            except subprocess.TimeoutExpired:
                log.warning("sandbox %s: still exiting %gs after SIGKILL", info.name, 2 * STOP_WAIT)
        self._syncs.pop(info.thread_id, None)
        await asyncio.to_thread(self.launcher.release, info.thread_id)
        await asyncio.to_thread(_clear, self._dir(info.thread_id), Path(info.connection["ip"]).parent)

    async def died_of(self, info: ProcessSandbox) -> str | None:
        """The sandbox's memory cgroup counts the OOM killer's kills."""
        if self.launcher.oom_killed(info.thread_id):
            limit = self.launcher.isolation.limits.memory_bytes
            return f"it ran out of memory (the limit is {limit / 2**20:.0f} MiB per sandbox; THREADBOX_LOCAL_MEMORY_LIMIT)"
        return None

    def _sync(self, info: ProcessSandbox, user: str | None) -> WorkspaceSync:
        sync = self._syncs.get(info.thread_id)
        if sync is None or sync.root != info.workspace:
            assert info.workspace is not None
            sync = WorkspaceSync(self.store, info.thread_id, info.workspace, self.quotas, self.ttl, user)
            self._syncs[info.thread_id] = sync
        return sync

    def _give(self, info: ProcessSandbox) -> None:
        """Files the controller wrote (as root) must be the sandbox's to change."""
        iso = self.launcher.isolation
        if iso.sandboxed and iso.as_root and info.workspace is not None:
            chown_tree(info.workspace, sandbox_uid(info.thread_id))

    async def restore(self, info: ProcessSandbox, user: str | None) -> int:
        count = await asyncio.to_thread(self._sync(info, user).restore)
        await asyncio.to_thread(self._give, info)
        return count

    async def persist(self, info: ProcessSandbox, user: str | None) -> PersistResult:
        return await asyncio.to_thread(self._sync(info, user).persist)

    async def save_state(self, info: ProcessSandbox, cap: int, user: str | None = None) -> Saved:
        return await asyncio.to_thread(self._save_state, info.thread_id, info.connection, cap, user)

    def _save_state(self, thread_id: str, connection: dict[str, Any], cap: int, user: str | None) -> Saved:
        room = kernelstate.room(self.store, thread_id, self.quotas, cap, user)
        return kernelstate.save(connection, self.store, thread_id, self._dir(thread_id) / "home", room)

    async def load_state(self, info: ProcessSandbox, cap: int) -> str | None:
        home = self._dir(info.thread_id) / "home"
        if not await asyncio.to_thread(kernelstate.fetch, self.store, info.thread_id, home):
            return None
        return await asyncio.to_thread(kernelstate.load, info.connection)

    async def write_file(self, info: ProcessSandbox, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._sync(info, None).write, name, data)
        await asyncio.to_thread(self._give, info)

    async def touch(self, info: ProcessSandbox) -> None:
        info.last_active = time.time()
        os.utime(self._dir(info.thread_id) / "sandbox.json", (info.last_active, info.last_active))
