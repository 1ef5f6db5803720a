"""The kind cluster hack/kind/up brings up, as the tests in this directory see it.

With the private engine (CI here: no Docker, no registry) the cluster, its port mappings and
skaffold's port-forwards live in network namespace ``threadbox-kind``: every command goes
through ``hack/kind/exec``, and every socket the test opens itself (the API client, the fake
Slack's listener) is opened by one worker thread that has joined that namespace (``Kind.net``).

These tests run only when selected (``pytest -m kind``; hack/test.sh selects them after the other
tests, its background ``hack/kind/up --prepare`` having built the cold parts beside them).
Unselected, or where the machine cannot provide kind, they skip with one loud line.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXEC = ROOT / "hack" / "kind" / "exec"
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def _skip(line: str) -> None:
    print(f"\n{line}", file=sys.stderr)  # loud in the run log even without -rs
    pytest.skip(line)


def _enter_netns(name: str) -> None:
    """Moves the calling thread (only it: a network namespace is per thread) into ``name``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into netns {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


@dataclass
class Kind:
    env: dict[str, str]
    _pool: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        netns = self.env.get("THREADBOX_KIND_NETNS")
        init: Callable[[], None] = (lambda: _enter_netns(netns)) if netns else (lambda: None)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="kind-netns", initializer=init)

    def net(self, fn: Callable[[], T], timeout: float = 600) -> T:
        """Runs ``fn`` where the cluster's ports are (see the module docstring)."""
        return self._pool.submit(fn).result(timeout)

    def run(self, *args: str | Path, timeout: float, cwd: Path | None = None) -> str:
        proc = subprocess.run(
            [str(EXEC), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd
        )
        if proc.returncode:
            raise AssertionError(
                f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc.stdout

    def kubectl(self, *args: str, timeout: float = 60) -> str:
        return self.run("kubectl", "--context", "kind-threadbox", *args, timeout=timeout)

    def popen(self, *args: str | Path, log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """``args`` in the background (its own session: a SIGINT to it reaches only it), output to ``log``.
        hack/kind/exec, ip netns exec and env all exec, so the pid is the command's own."""
        with log.open("ab") as out:
            return subprocess.Popen(
                [str(EXEC), *map(str, args)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )

    def port_open(self, port: int) -> bool:
        def probe() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            except OSError:
                return False
            return True

        return self.net(probe, timeout=30)

    def wait(self, what: str, check: Callable[[], object], timeout: float, interval: float = 1) -> None:
        end = time.monotonic() + timeout
        while not check():
            if time.monotonic() > end:
                raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(interval)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _selected(config: pytest.Config) -> bool:
    expr = str(config.getoption("markexpr") or "")
    return "kind" in expr and "not kind" not in expr


@pytest.fixture(scope="session")
def kind(request: pytest.FixtureRequest) -> Iterator[Kind]:
    if not _selected(request.config):
        _skip(
            "SKIPPED: kind: not selected; hack/test.sh with no arguments runs it after the other "
            "tests (README 'Testing locally on kind'); alone: uv run pytest -m kind tests/kind"
        )
    if sys.platform != "linux":
        _skip("SKIPPED: kind: needs Linux")
    # Cold, this builds kind, skaffold and a node image: about 15 minutes on 2 cores.
    proc = subprocess.run([str(ROOT / "hack" / "kind" / "up")], capture_output=True, text=True, timeout=3600)
    if proc.returncode == 3:
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("SKIPPED:")]
        _skip(lines[-1] if lines else "SKIPPED: kind: hack/kind/up cannot run on this machine")
    if proc.returncode:
        raise RuntimeError(f"hack/kind/up failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    env_file = Path(proc.stdout.strip().splitlines()[-1])
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    k = Kind(env)
    try:
        yield k
    finally:
        k.close()
