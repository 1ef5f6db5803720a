"""``python -m threadbox_sandbox``: the sandbox pod's PID 1 (or tini's only child).

Order: settings -> launch the kernel, which imports but binds nothing yet -> prove the
network policy -> let the kernel bind -> restore the thread's files -> serve the in-pod
server; on SIGTERM: stop serving, have the kernel save its variables (when the
controller keeps state), stop the kernel (so nothing writes during the final sync),
persist, exit 0. A warm pod has no thread yet: it skips the restore,
and its thread, credentials and files arrive later with POST /bind.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from threadbox_sandbox.kernel import KernelSupervisor, kernel_env
from threadbox_sandbox.policy import PolicyNotInForce, probe_target, wait_until_denied
from threadbox_sandbox.settings import Settings, SettingsError, from_env, load_connection, load_storage

if TYPE_CHECKING:
    from threadbox_sandbox.server import Workspace

log = logging.getLogger("threadbox_sandbox")

RESTORE_ATTEMPTS = 3
# A kernel busy with a long cell answers late or never: the grace period (about 30 s) must
# still cover the final persist of the files.
SIGTERM_STATE_TIMEOUT = 15.0


def _reexec_under_tini() -> None:
    """As PID 1, hand that role to tini when the image has it.

    PID 1 must reap every orphan and gets no default signal handling; tini does both
    well. Without tini, the kernel supervisor reaps orphans itself.
    """
    if os.getpid() != 1:
        return
    tini = shutil.which("tini")
    if tini:
        os.execv(tini, [tini, "--", sys.executable, "-m", "threadbox_sandbox", *sys.argv[1:]])


PR_SET_DUMPABLE = 4


def _refuse_ptrace() -> None:
    """Make this process (the supervisor and in-pod server) non-dumpable.

    The kernel runs as the same uid, so user code could otherwise ptrace this process or
    write its /proc/<pid>/mem and tamper with the final persist. A non-dumpable process can
    be traced only with CAP_SYS_PTRACE, which nothing in the pod has. The kernel is exec'd,
    and exec makes it dumpable again: only this process is shielded.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning("could not make the supervisor non-dumpable: %s", os.strerror(ctypes.get_errno()))


def _restore(workspace: Workspace) -> None:
    """Restore with a few retries; on failure start anyway, without files and refusing persist.

    A pod that cannot reach MinIO still runs code; the controller's own /restore call
    (or a later one) surfaces the error, and persist stays refused so an empty
    workspace can never delete the thread's stored files.
    """
    for attempt in range(1, RESTORE_ATTEMPTS + 1):
        try:
            count = workspace.restore()
        except Exception as exc:
            log.warning("restore attempt %d/%d failed: %s", attempt, RESTORE_ATTEMPTS, exc)
            if attempt < RESTORE_ATTEMPTS:
                time.sleep(attempt)
        else:
            log.info("restored %d file(s) into %s", count, workspace.settings.workspace)
            return
    log.error("could not restore the thread's files; persist is refused until POST /restore succeeds")


def _keep_state(workspace: Workspace, kernel: dict[str, Any]) -> None:
    """Save the kernel's variables before it stops, if the controller asked this sandbox to."""
    if workspace.state_cap is None:
        return
    try:
        saved = workspace.save_state(kernel, None, SIGTERM_STATE_TIMEOUT)
    except Exception as exc:  # the files must still be saved
        log.warning("kernel state not saved: %s", exc)
        return
    log.info("kernel state: %s", saved.describe())


def _seed_matplotlib_cache(home: Path) -> None:
    """Copy the font cache built into the image, so the first plot in a pod skips a slow font scan.

    The image's copy is read-only (readOnlyRootFilesystem); HOME is a writable emptyDir.
    """
    src, dest = Path(sys.prefix) / "mplconfig", home / ".matplotlib"
    if src.is_dir() and not dest.exists():
        try:
            shutil.copytree(src, dest)
        except OSError as exc:
            log.warning("could not seed the matplotlib cache: %s", exc)


def _launch_kernel(settings: Settings, connection: dict[str, Any]) -> KernelSupervisor:
    """The kernel, launched gated: it imports at once, and binds nothing before ``open_gate``."""
    python = Path(sys.executable)
    _seed_matplotlib_cache(settings.home)
    tmp = Path(os.environ.get("TMPDIR") or "/tmp")
    kernel = KernelSupervisor(
        python=python,
        connection=connection,
        connection_file=settings.run_dir / "kernel.json",
        cwd=settings.workspace,
        env=kernel_env(python, settings.home, tmp, settings.max_output_bytes),
        reap_orphans=os.getpid() == 1,
        preimport=settings.preimport,
    )
    kernel.start()
    return kernel


def _policy_proven(settings: Settings) -> bool:
    """Whether the pod's network policy is in force (or there is none to prove), before the
    kernel binds a port and before the pod can turn ready."""
    if settings.policy_check_seconds is None:
        return True
    try:
        wait_until_denied(probe_target(os.environ), settings.policy_check_seconds)
    except PolicyNotInForce as exc:
        log.error("cannot start: %s", exc)
        return False
    return True


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    _reexec_under_tini()
    _refuse_ptrace()
    try:
        settings = from_env()
        connection = load_connection(settings)
        if settings.thread_id is not None:
            load_storage(settings)  # fail at start, not at the first sync, on a wrong or foreign Secret
    except SettingsError as exc:
        log.error("cannot start: %s", exc)
        return 2

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    # Installed first: a SIGTERM during a slow restore must still end in a clean exit.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    kernel = _launch_kernel(settings, connection)
    # Imported only now: PID 1 has re-executed under tini by here, and the kernel imports
    # ipykernel meanwhile (MinIO's client is 150 ms of the pod's one CPU).
    from threadbox_sandbox.server import Workspace, serve

    if not _policy_proven(settings):
        kernel.stop()
        return 2
    kernel.open_gate()

    workspace = Workspace(settings)
    if settings.thread_id is None:
        log.info("warm sandbox: no thread yet, waiting for POST /bind")
    else:
        _restore(workspace)
    if stop.is_set():
        kernel.stop()
        return 0
    try:
        server = serve(settings, str(connection["key"]), workspace, kernel)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.server_host, settings.server_port, exc)
        kernel.stop()
        return 2

    stop.wait()
    log.info("shutting down: pod server, kernel, final persist")
    server.shutdown()
    server.server_close()
    _keep_state(workspace, server.kernel_connection())
    code = kernel.stop()
    log.info("kernel stopped (exit %s)", code)
    if workspace.thread_id is None:
        return 0  # a warm pod never claimed: no thread, nothing to save
    try:
        result = workspace.persist()
    except Exception as exc:
        log.error("final persist failed: %s", exc)
        return 1
    log.info(
        "final persist: %d changed, %d deleted, %d refused, %d bytes",
        len(result.changed),
        len(result.deleted),
        len(result.refused),
        result.bytes,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
