"""Starting and killing one local kernel, sandboxed by bubblewrap where the machine allows.

The controller talks to every local kernel over ZeroMQ ``ipc://`` sockets in the
sandbox's run folder: kernels need no network, and no TCP port can be taken from
under one (ipykernel binds ports the controller never sees, which once made a new
kernel die with "Address already in use" under load). Socket paths must fit in
``sun_path`` (108 bytes), so run folders live in a short per-controller folder under
``/tmp`` rather than in the data dir.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import signal
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jupyter_client.connect import write_connection_file

from controller import extensions, outputcap
from controller.backends import bwrap
from controller.backends.base import SandboxStartError
from controller.backends.limits import NICE, Cgroups, Limits, launch_prefix, rlimits

log = logging.getLogger(__name__)

KERNEL_MODULE = "ipykernel_launcher"
RUN_PARENT = Path("/tmp")
EXTENSIONS_INSIDE = Path("/opt/threadbox")  # where the kernel sees controller/extensions.py's files
Mode = Literal["auto", "bwrap", "off"]


class IsolationUnavailable(Exception):
    """THREADBOX_LOCAL_ISOLATION=bwrap, but bubblewrap cannot run here; the message says why."""


@dataclass(frozen=True)
class Isolation:
    """How local kernels are confined; decided once, when the backend is built."""

    sandboxed: bool
    as_root: bool
    limits: Limits
    cgroups: Cgroups | None
    reason: str | None = None  # why kernels are not sandboxed

    def describe(self) -> str:
        if not self.sandboxed:
            return f"none: kernels run unsandboxed, as this user ({self.reason})"
        who = "a uid of its own" if self.as_root else "this user's uid in a user namespace"
        bounds = "cgroup" if self.cgroups else "rlimit"
        return f"bubblewrap: own namespaces, no network, {who}, no capabilities, {bounds} limits"


def decide(mode: Mode, python: Path, limits: Limits, root: Path) -> Isolation:
    """Sandbox kernels with bubblewrap unless ``mode`` is off or (for auto) bwrap cannot run."""
    as_root = os.geteuid() == 0
    if mode == "off":
        return Isolation(False, as_root, limits, None, "THREADBOX_LOCAL_ISOLATION=off")
    with tempfile.TemporaryDirectory(prefix="threadbox-check-") as scratch:
        reason = bwrap.check(python, Path(scratch), as_root)
    if reason is None:
        return Isolation(True, as_root, limits, Cgroups.detect(scope(root)) if as_root else None)
    if mode == "bwrap":
        raise IsolationUnavailable(f"THREADBOX_LOCAL_ISOLATION=bwrap, but {reason}")
    return Isolation(False, as_root, limits, None, reason)


def scope(root: Path) -> str:
    """What sets this controller's sandboxes apart from another's on the machine (its data dir)."""
    return f"threadbox-{os.geteuid()}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"


def run_parent(root: Path) -> Path:
    """This controller's folder of run folders: short, private, and never a planted symlink."""
    parent = RUN_PARENT / scope(root)
    with contextlib.suppress(FileExistsError):
        parent.mkdir(mode=0o700)
    st = parent.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise SandboxStartError(f"{parent} is not a private folder of this user; remove it and retry")
    return parent


@dataclass(frozen=True)
class Prepared:
    argv: list[str]
    env: dict[str, str]
    cwd: Path | None
    connection: dict[str, Any]
    run: Path


@dataclass
class Spawned:
    proc: subprocess.Popen[bytes]
    connection: dict[str, Any]
    run: Path


def _connection(run: Path, ip: str) -> dict[str, Any]:
    _, info = write_connection_file(
        str(run / "kernel.json"),
        ip=ip,
        transport="ipc",
        key=secrets.token_hex(32).encode(),
        shell_port=1,
        iopub_port=2,
        stdin_port=3,
        control_port=4,
        hb_port=5,
    )
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in info.items()}


class Launcher:
    """Starts a thread's kernel in its sandbox and kills it with everything it started."""

    def __init__(self, python: Path, isolation: Isolation, max_output_bytes: int) -> None:
        self.python = python
        self.isolation = isolation
        self.max_output_bytes = max_output_bytes

    def _env(self, home: str) -> dict[str, str]:
        return {
            "PATH": f"{self.python.parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": home,
            "TMPDIR": f"{home}/tmp" if not self.isolation.sandboxed else "/tmp",
            "MPLCONFIGDIR": f"{home}/.matplotlib",
            "USER": "sandbox",
            "LOGNAME": "sandbox",
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            **outputcap.kernel_env(self.max_output_bytes),
        }

    def prepare(self, thread_id: str, base: Path, run: Path) -> Prepared:
        """Folders, connection file and cgroups of a new kernel. Blocking: run it in a worker thread."""
        files = tuple((extensions.FOLDER / name, str(EXTENSIONS_INSIDE / name)) for name in extensions.NAMES)
        layout = bwrap.Layout(base / "workspace", base / "home", run, self.python, files)
        uid = bwrap.sandbox_uid(thread_id)
        iso = self.isolation
        if iso.sandboxed:
            bwrap.prepare(layout, uid, iso.as_root)
            connection = _connection(run, f"{bwrap.INSIDE_RUN}/k")
            if iso.as_root:
                os.chown(run / "kernel.json", uid, uid)  # written 0600 by us, read by the kernel
            kernel = [str(self.python), "-m", KERNEL_MODULE, "-f", f"{bwrap.INSIDE_RUN}/kernel.json"]
            kernel += extensions.kernel_args(EXTENSIONS_INSIDE)
            argv = self._launch(thread_id, bwrap.argv(layout, uid, iso.limits.tmp_bytes, kernel, iso.as_root))
            env, cwd = self._env(bwrap.INSIDE_HOME), None
        else:
            for path in (layout.workspace, layout.home / "tmp", run):
                path.mkdir(parents=True, exist_ok=True)
            connection = _connection(run, str(run / "k"))
            argv = [*NICE, str(self.python), "-m", KERNEL_MODULE, "-f", str(run / "kernel.json")]
            argv += extensions.kernel_args()
            env, cwd = self._env(str(layout.home)), layout.workspace
        connection["ip"] = str(run / "k")
        return Prepared(argv, env, cwd, connection, run)

    def launch(self, prepared: Prepared, log_file: Path) -> Spawned:
        """Start the prepared kernel. Call it on the event loop's thread: bwrap's parent-death
        signal follows the forking thread, and a worker thread that exits would end the kernel."""
        with log_file.open("wb") as out:
            try:
                # start_new_session: an unsandboxed kernel's process group is what stop() kills.
                proc = subprocess.Popen(
                    prepared.argv,
                    cwd=prepared.cwd,
                    env=prepared.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                )
            except OSError as exc:
                raise SandboxStartError(f"could not start a kernel with {self.python}: {exc}") from exc
        return Spawned(proc, prepared.connection, prepared.run)

    def _launch(self, thread_id: str, sandbox: list[str]) -> list[str]:
        iso = self.isolation
        try:
            procs = (
                iso.cgroups.create(thread_id, iso.limits.memory_bytes, iso.limits.processes)
                if iso.cgroups
                else []
            )
        except OSError as exc:
            raise SandboxStartError(f"could not set this sandbox's memory and process limits: {exc}") from exc
        return [*launch_prefix(procs, rlimits(iso.limits, bool(procs))), *sandbox]

    def kill(self, thread_id: str, pid: int) -> None:
        """SIGKILL the sandbox: its PID namespace (or process group) dies with every process in it."""
        with contextlib.suppress(ProcessLookupError):
            if self.isolation.sandboxed:
                # bwrap's child holds PR_SET_PDEATHSIG, so killing bwrap ends the PID namespace,
                # and with it children that started sessions of their own.
                os.kill(pid, signal.SIGKILL)
            else:
                os.killpg(pid, signal.SIGKILL)
        if self.isolation.cgroups:
            self.isolation.cgroups.kill(thread_id)

    def release(self, thread_id: str) -> None:
        """Remove the sandbox's cgroups once its processes are gone. Blocking: waits for them."""
        if self.isolation.cgroups:
            try:
                self.isolation.cgroups.remove(thread_id)
            except OSError as exc:  # the next start of this thread tries again
                log.warning("sandbox of thread %s: %s", thread_id, exc)

    def oom_killed(self, thread_id: str) -> bool:
        return bool(self.isolation.cgroups and self.isolation.cgroups.oom_killed(thread_id))


def chown_tree(root: Path, uid: int) -> None:
    """Give the sandbox uid what the controller wrote into its workspace, never following a link.

    fwalk holds each folder open, so a folder swapped for a symlink meanwhile is not entered.
    """
    for _, dirs, files, fd in os.fwalk(root, follow_symlinks=False):
        for name in (*dirs, *files):
            with contextlib.suppress(FileNotFoundError):
                os.chown(name, uid, uid, dir_fd=fd, follow_symlinks=False)
