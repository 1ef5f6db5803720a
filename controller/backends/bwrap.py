"""The bubblewrap sandbox of a local kernel, built by pure functions.

A kernel gets its own mount, PID, IPC, UTS and network namespaces. It sees the system's
``/usr`` and the lean sandbox environment read-only, its workspace read-write at
``/workspace``, its own home and size-bounded ``/tmp`` and ``/dev/shm``, and
``/run/kernel``, the folder holding its connection file and its ZeroMQ ``ipc://``
sockets. Nothing else of the host exists for it: no other thread's files or sockets,
no controller process in ``/proc``, no network but its own loopback.

Run by root (the controller in a container or CI), bubblewrap sets up as root and
``setpriv`` then drops to a per-sandbox uid with no capabilities and an empty bounding
set. Run by anyone else, bubblewrap makes a user namespace and the kernel keeps that
user's uid. Either way the kernel is not root and holds no capability.
"""

from __future__ import annotations

import os
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

INSIDE_WORKSPACE = "/workspace"
INSIDE_HOME = "/home/sandbox"
INSIDE_RUN = "/run/kernel"
# Root-mode uids: one per thread (hashed), far from system and login uids, so the process
# count of one sandbox is never shared with another's or a host user's.
UID_BASE = 200_000
UID_SPAN = 60_000
# Read by tools and libraries that look themselves up; everything else under /etc stays hidden.
ETC_FILES = ("ld.so.cache", "localtime", "nsswitch.conf", "mime.types", "fonts", "ssl", "ca-certificates")
MERGED_USR = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
CHECK_TIMEOUT = 20.0


@dataclass(frozen=True)
class Layout:
    """Host paths of one sandbox."""

    workspace: Path
    home: Path
    run: Path
    python: Path
    # More host files the sandbox reads (host path, path inside), such as the output cap.
    read_only: tuple[tuple[Path, str], ...] = ()


def sandbox_uid(thread_id: str) -> int:
    return UID_BASE + zlib.crc32(thread_id.encode()) % UID_SPAN


def python_roots(python: Path) -> list[Path]:
    """What the sandbox python needs read-only: its venv and the interpreter it was made from."""
    venv = python.parent.parent
    cfg = venv / "pyvenv.cfg"
    if not cfg.exists():
        return [Path(os.path.realpath(python)).parent.parent]
    home = next(
        line.split("=", 1)[1].strip() for line in cfg.read_text().splitlines() if line.startswith("home")
    )
    return [venv, Path(home).parent]


def _dirs(dest: Path, made: set[Path]) -> list[str]:
    """Create the ancestors of a mount point world-traversable (bwrap copies the host's modes)."""
    args: list[str] = []
    for parent in reversed(dest.parents[:-1]):
        if parent not in made:
            made.add(parent)
            args += ["--perms", "0755", "--dir", str(parent)]
    return args


def _tmpfs(dest: str, size: int) -> list[str]:
    """A size-bounded, sticky, world-writable tmpfs (bwrap makes it 0755 root otherwise)."""
    return ["--perms", "1777", "--size", str(size), "--tmpfs", dest]


def _system() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in MERGED_USR:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


def identity(uid: int) -> dict[str, str]:
    """passwd, group and hosts of the sandbox: tools that look the user up find it."""
    return {
        "passwd": f"sandbox:x:{uid}:{uid}:sandbox:{INSIDE_HOME}:/bin/sh\n",
        "group": f"sandbox:x:{uid}:\n",
        "hosts": "127.0.0.1 localhost sandbox\n::1 localhost\n",
    }


def prepare(layout: Layout, uid: int, as_root: bool) -> None:
    """Make the sandbox's host folders, owned by its uid, and its /etc identity files."""
    for path in (layout.workspace, layout.home / "tmp", layout.run):
        path.mkdir(parents=True, exist_ok=True)
    for name, text in identity(uid).items():
        (layout.run / name).write_text(text)
    if as_root:
        for path in (layout.workspace, layout.home, layout.home / "tmp", layout.run):
            os.chown(path, uid, uid)


def drop_to(uid: int) -> list[str]:
    """The prefix that turns bwrap's root child into ``uid`` with no capabilities, for good."""
    return [
        "/usr/bin/setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]


def argv(layout: Layout, uid: int, tmp_bytes: int, command: list[str], as_root: bool) -> list[str]:
    """The full bwrap command line that runs ``command`` inside the sandbox."""
    args = [
        "bwrap",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "sandbox",
        *_system(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        *_tmpfs("/tmp", tmp_bytes),
        *_tmpfs("/dev/shm", tmp_bytes),
    ]
    # Mount points made above are not re-made: a --dir with --perms would chmod /tmp to 0755.
    made = {Path("/tmp"), Path("/dev"), Path("/proc")}
    for root in python_roots(layout.python):
        if not root.is_relative_to("/usr"):
            args += [*_dirs(root, made), "--ro-bind", str(root), str(root)]
    for host, inside in (
        (layout.workspace, INSIDE_WORKSPACE),
        (layout.home, INSIDE_HOME),
        (layout.run, INSIDE_RUN),
    ):
        args += [*_dirs(Path(inside), made), "--bind", str(host), inside]
    for host, inside in layout.read_only:
        args += [*_dirs(Path(inside), made), "--ro-bind", str(host), inside]
    for name in identity(uid):
        args += ["--ro-bind", str(layout.run / name), f"/etc/{name}"]
    args += ["--chdir", INSIDE_WORKSPACE]
    if as_root:
        # setpriv needs these three to drop to the sandbox uid; it then drops every capability.
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
        return [*args, *drop_to(uid), *command]
    return [*args, "--unshare-user", "--cap-drop", "ALL", *command]


def check(python: Path, scratch: Path, as_root: bool) -> str | None:
    """None if a sandbox like the real ones starts here, else the reason it cannot."""
    layout = Layout(scratch / "workspace", scratch / "home", scratch / "run", python)
    uid = sandbox_uid("check")
    prepare(layout, uid, as_root)
    command = [str(python), "-I", "-S", "-c", "pass"]
    try:
        proc = subprocess.run(
            argv(layout, uid, 1 << 20, command, as_root),
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT,
        )
    except FileNotFoundError:
        return "bubblewrap (bwrap) is not installed"
    except subprocess.TimeoutExpired:
        return f"a test sandbox did not finish within {CHECK_TIMEOUT:g}s"
    if proc.returncode:
        return f"bubblewrap cannot make a sandbox here: {proc.stderr.strip() or f'exit {proc.returncode}'}"
    return None
