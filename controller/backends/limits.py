"""Resource limits of a local sandbox: a cgroup of its own where the machine allows, rlimits always.

A cgroup bounds the sandbox as a whole (memory of every process, process count) and is
what the kernel's OOM killer reports on; rlimits are per process, so they are the
fallback for memory and processes and the only tool for file size and open files.
The controller makes each sandbox's group under its own cgroup, so a controller
confined by its operator cannot hand out more than it was given.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_FS = Path("/sys/fs/cgroup")
GROUP_PARENT = "threadbox"
REMOVE_WAIT = 5.0


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    processes: int
    file_bytes: int
    open_files: int
    tmp_bytes: int


@dataclass(frozen=True)
class _Version:
    """Where each limit lives in one cgroup version (v1: one hierarchy per controller)."""

    memory_dir: str
    memory_file: str
    pids_dir: str
    oom_file: str


V1 = _Version("memory", "memory.limit_in_bytes", "pids", "memory.oom_control")
V2 = _Version("", "memory.max", "", "memory.events")


# Joins each cgroup named before "--", then runs the rest: a POSIX shell starts in about a
# millisecond (a Python launcher cost 12 ms of every kernel start), and the kernel keeps its pid.
JOIN = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


# Kernels yield the CPU to the controller: twenty kernels importing pandas on two cores must
# not delay its answers (Slack retries an event it has not seen acknowledged within 3 s).
NICE = ("nice", "-n", "10")


def rlimits(limits: Limits, cgroups: bool) -> dict[str, int]:
    """prlimit's options a sandbox gets; memory and processes only when no cgroup bounds them."""
    table = {"fsize": limits.file_bytes, "nofile": limits.open_files}
    if not cgroups:
        # Address space, not resident memory: the nearest per-process stand-in for a memory cgroup.
        table.update({"as": limits.memory_bytes, "nproc": limits.processes})
    return table


def launch_prefix(cgroup_procs: list[str], limits: dict[str, int]) -> list[str]:
    """What runs before the sandbox: join its cgroups, then set its rlimits, then exec.

    Both happen before the sandbox's first fork, so no process of it starts unbounded."""
    join = ["/bin/sh", "-c", JOIN, "sh", *cgroup_procs, "--"] if cgroup_procs else []
    return [*join, *NICE, "prlimit", *(f"--{name}={value}:{value}" for name, value in limits.items()), "--"]


def _own_paths(proc_cgroup: str) -> dict[str, str]:
    """Controller name (``""`` for v2) -> this process's path, from /proc/self/cgroup."""
    paths = {}
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(","):
            paths[name] = path
    return paths


class Cgroups:
    """One group per sandbox, ``<own cgroup>/threadbox/<name>``, with memory and pids limits."""

    def __init__(self, version: _Version, memory_base: Path, pids_base: Path) -> None:
        self.version = version
        self.memory_base = memory_base
        self.pids_base = pids_base

    @classmethod
    def detect(cls, scope: str, root: Path = CGROUP_FS) -> Cgroups | None:
        """Cgroups this process may create under ``threadbox/<scope>``, or None (then rlimits stand
        in). The scope keeps two controllers' threads of the same id in groups of their own."""
        try:
            own = _own_paths(Path("/proc/self/cgroup").read_text())
        except OSError:
            return None
        if "memory" in own and "pids" in own:
            version, mem, pids = V1, own["memory"], own["pids"]
        elif "" in own:
            version, mem, pids = V2, own[""], own[""]
        else:
            return None
        found = cls(
            version,
            root / version.memory_dir / mem.lstrip("/") / GROUP_PARENT / scope,
            root / version.pids_dir / pids.lstrip("/") / GROUP_PARENT / scope,
        )
        return found if found._usable() else None

    def _bases(self) -> list[Path]:
        return list(dict.fromkeys((self.memory_base, self.pids_base)))

    def _usable(self) -> bool:
        try:
            for base in self._bases():
                base.mkdir(parents=True, exist_ok=True)
            if self.version is V2:
                for group in (self.memory_base.parent, self.memory_base):
                    (group / "cgroup.subtree_control").write_text("+memory +pids")
            probe = self.create("probe", 1 << 30, 64)
        except OSError as exc:
            log.info("no cgroups for sandboxes (%s); rlimits bound them instead", exc)
            return False
        self.remove("probe")
        return bool(probe)

    def create(self, name: str, memory_bytes: int, processes: int) -> list[str]:
        """Make the sandbox's groups; returns the ``cgroup.procs`` files its launcher joins."""
        self.remove(name)  # a crashed controller's leftover group would hold old limits
        mem, pids = self.memory_base / name, self.pids_base / name
        for group in dict.fromkeys((mem, pids)):
            group.mkdir()
        (mem / self.version.memory_file).write_text(str(memory_bytes))
        (pids / "pids.max").write_text(str(processes))
        return [str(group / "cgroup.procs") for group in dict.fromkeys((mem, pids))]

    def kill(self, name: str) -> None:
        """SIGKILL every process left in the sandbox's groups."""
        for base in self._bases():
            with contextlib.suppress(OSError):
                for pid in (base / name / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)

    def remove(self, name: str) -> None:
        """Kill what is left in the groups, wait for it to exit, and remove them."""
        self.kill(name)
        deadline = time.monotonic() + REMOVE_WAIT
        for base in self._bases():
            while True:
                try:
                    (base / name).rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:  # EBUSY while a killed process is still exiting
                    if time.monotonic() > deadline:
                        raise OSError(f"cgroup {base / name} still busy: {exc}") from exc
                    time.sleep(0.01)  # the kernel gives no event for a cgroup becoming empty (v1)

    def oom_killed(self, name: str) -> bool:
        """Whether the kernel's OOM killer has killed a process of this sandbox."""
        try:
            text = (self.memory_base / name / self.version.oom_file).read_text()
        except OSError:
            return False
        counts = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
        return int(counts.get("oom_kill", "0")) > 0
