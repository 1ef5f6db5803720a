"""Supervise the thread's ipykernel: launch it, relaunch it whenever it exits, stop it.

A restart from the controller is a ``shutdown_request(restart=True)`` on the
control channel: ipykernel answers and exits, and restarting is the manager's
job, which in a pod is ours. Every launch reuses the same connection file, so
the controller's ZMQ sockets reconnect to the same ports with the same key.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from controller import extensions, outputcap

PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
log = logging.getLogger("threadbox_sandbox.kernel")

# What ``python -m ipykernel_launcher`` does, split in two: the import (most of a kernel's
# start) runs at once, and the kernel binds its ports only once the supervisor writes one byte
# to its stdin (``open_gate``). So a pod's kernel imports while the entrypoint proves its
# network policy, and still no port opens before that proof. EOF (the supervisor died) ends
# it. As ipykernel_launcher does, it drops the cwd ("", the workspace) from sys.path, so no user
# file shadows what ipykernel imports; IPython puts it back after the standard library for user
# code. (Not python -P: IPython then leaves it out, and `import helper` of a user's file fails.)
GATED_LAUNCHER = """\
import os, sys
del sys.path[0]
from ipykernel import kernelapp
if os.read(0, 1) != b"1":
    sys.exit(0)
os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
kernelapp.launch_new_instance()
"""
# The kernel's extensions ship beside this file (standalone: the kernel loads them by path).
EXTENSIONS = Path(__file__).parent
# A kernel that dies within this many seconds of its launch counts as a crash loop: the
# next launch is delayed (doubling up to MAX_BACKOFF), so a broken image does not spin a core.
QUICK_EXIT = 5.0
MAX_BACKOFF = 10.0


def write_connection_file(path: Path, connection: Mapping[str, Any]) -> None:
    """Write the kernel's copy of the connection info, readable by us only (it holds the key)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(dict(connection), fh)
    os.replace(tmp, path)


def kernel_env(
    python: Path, home: Path, tmp: Path, max_output: int = outputcap.DEFAULT_MAX_OUTPUT_BYTES
) -> dict[str, str]:
    """The kernel's environment, built from scratch: user code sees no THREADBOX_* variable.

    MPLBACKEND is left unset on purpose: ipykernel then picks its inline backend and
    plots reach the controller as display_data.
    """
    return {
        "PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "MPLCONFIGDIR": str(home / ".matplotlib"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        **outputcap.kernel_env(max_output),
    }


class KernelSupervisor:
    def __init__(
        self,
        python: Path,
        connection: Mapping[str, Any],
        connection_file: Path,
        cwd: Path,
        env: Mapping[str, str],
        reap_orphans: bool = False,
        preimport: tuple[str, ...] = (),
    ) -> None:
        self.python = python
        self.connection = dict(connection)
        self.connection_file = connection_file
        self.cwd = cwd
        self.env = dict(env)
        self.preimport = preimport
        # True when we are PID 1 without tini: then orphaned grandchildren (processes user
        # code started and abandoned) are re-parented to us and only we can reap them.
        self.reap_orphans = reap_orphans
        self.launches = 0
        self.last_exit: int | None = None
        # Closed until open_gate (the entrypoint's policy proof); once open, it stays open for
        # every relaunch.
        self._gate_open = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        with self._lock:
            return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kernel-supervisor", daemon=True)
        self._thread.start()

    def _launch(self) -> subprocess.Popen[bytes] | None:
        with self._lock:
            # Checked under the lock so stop() either sees this process or prevents it.
            if self._stopping.is_set():
                return None
            # Rewritten before every launch: ipykernel may rewrite or remove its file, and the
            # content must stay what the controller holds.
            write_connection_file(self.connection_file, self.connection)
            self.cwd.mkdir(parents=True, exist_ok=True)
            self._proc = subprocess.Popen(
                [
                    str(self.python),
                    "-c",
                    GATED_LAUNCHER,
                    "-f",
                    str(self.connection_file),
                    *extensions.kernel_args(EXTENSIONS, self.preimport),
                ],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.PIPE,
                # Its own process group: ipykernel's interrupt then signals user subprocesses
                # too, and stop() can kill everything the kernel started.
                start_new_session=True,
                # If the supervisor dies without stopping it (SIGKILL, OOM), the kernel must not
                # live on unsupervised; the forking thread is the supervisor's, which outlives it.
                preexec_fn=_die_with_parent,
            )
            self.launches += 1
            log.info("kernel launched (pid %d, launch %d)", self._proc.pid, self.launches)
            if self._gate_open:
                _let_through(self._proc)
            return self._proc

    def open_gate(self) -> None:
        """Let the kernel bind its ports and serve; until then it only imports (GATED_LAUNCHER)."""
        with self._lock:
            self._gate_open = True
            if self._proc is not None:
                _let_through(self._proc)

    def _wait(self, proc: subprocess.Popen[bytes]) -> int:
        if not self.reap_orphans:
            return proc.wait()
        # One reaper for every child: waiting for any pid collects orphaned zombies as well,
        # and the kernel's own status is handed to its Popen object.
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return proc.wait()
            except InterruptedError:
                continue
            if pid == proc.pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return proc.returncode

    def _run(self) -> None:
        quick_exits = 0
        try:
            while True:
                proc = self._launch()
                if proc is None:
                    return
                started = time.monotonic()
                code = self._wait(proc)
                self.last_exit = code
                if self._stopping.is_set():
                    return
                quick_exits = quick_exits + 1 if time.monotonic() - started < QUICK_EXIT else 0
                delay = min(MAX_BACKOFF, 0.25 * 2**quick_exits) if quick_exits else 0.0
                log.info("kernel exited with %s; relaunching in %.1fs", code, delay)
                if self._stopping.wait(delay):
                    return
        except Exception:
            log.exception("the kernel supervisor failed")
        finally:
            self._done.set()

    def stop(self, grace: float = 5.0) -> int | None:
        """Stop the kernel and everything it started; returns the kernel's exit code."""
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is None or self._thread is None:
            return None
        _killpg(proc.pid, signal.SIGTERM)
        if not self._done.wait(grace):
            log.warning("kernel did not exit within %.0fs of SIGTERM; killing it", grace)
            _killpg(proc.pid, signal.SIGKILL)
            self._done.wait(5.0)
        # Processes user code left in the kernel's group would otherwise outlive it.
        _killpg(proc.pid, signal.SIGKILL)
        return proc.returncode


def _let_through(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is None or proc.stdin.closed:
        return
    # A kernel that already exited (EPIPE) is relaunched, and its relaunch let through.
    with contextlib.suppress(OSError):
        os.write(proc.stdin.fileno(), b"1")
    proc.stdin.close()


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
