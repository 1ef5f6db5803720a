"""The sandbox kernel's extensions (the output cap, the workspace-change answer), in a real kernel
from the lean sandbox env, started with exactly the arguments and environment that
controller/extensions.py and controller/outputcap.py give a kernel launch."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import write_connection_file

from controller.extensions import CHANGED_EXPRESSION, CHANGED_KEY, kernel_args, workspace_changed
from controller.outputcap import kernel_env

pytestmark = pytest.mark.integration

LIMIT = 64 * 1024
NOTE = "[output limit]"


@pytest.fixture
def kernel(
    request: pytest.FixtureRequest, tmp_path: Path, sandbox_python: Path
) -> Iterator[BlockingKernelClient]:
    preimport: tuple[str, ...] = getattr(request, "param", ())  # parametrized indirectly
    conn_file = tmp_path / "kernel.json"
    # ipc:// endpoints in this test's folder: TCP ports picked free beforehand were seen taken by
    # the time the kernel bound them ("Address already in use") while other suites ran.
    write_connection_file(
        str(conn_file),
        transport="ipc",
        ip=str(tmp_path / "k"),
        key=os.urandom(16).hex().encode(),
        shell_port=1,
        iopub_port=2,
        stdin_port=3,
        control_port=4,
        hb_port=5,
    )
    env = {"PATH": f"{sandbox_python.parent}:/usr/bin:/bin", "HOME": str(tmp_path), **kernel_env(LIMIT)}
    workspace = tmp_path / "workspace"  # apart from the kernel's log, which changes as it runs
    workspace.mkdir()
    with (tmp_path / "kernel.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                str(sandbox_python),
                "-m",
                "ipykernel_launcher",
                "-f",
                str(conn_file),
                *kernel_args(preimport=preimport),
            ],
            cwd=workspace,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    client = BlockingKernelClient()
    client.load_connection_file(str(conn_file))
    # No heartbeat: wait_for_ready would call a kernel that misses beats while it starts on a
    # busy machine dead ("Kernel died before replying to kernel_info").
    client.start_channels(hb=False)
    try:
        client.wait_for_ready(timeout=60)
        yield client
    finally:
        client.stop_channels()
        proc.kill()
        proc.wait(timeout=10)


def run(client: BlockingKernelClient, code: str) -> dict[str, Any]:
    """The cell's stream text by name, and its reply status."""
    texts: dict[str, str] = {"stdout": "", "stderr": ""}

    def collect(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            texts[msg["content"]["name"]] += msg["content"]["text"]

    reply = client.execute_interactive(code, timeout=60, output_hook=collect)
    return {**texts, "status": reply["content"]["status"]}


def test_a_cell_prints_up_to_the_cap_then_one_note(kernel: BlockingKernelClient) -> None:
    out = run(kernel, "for _ in range(2000): print('x' * 999)")  # 2 MB in 1000-byte lines
    assert out["status"] == "ok"
    assert LIMIT - 1024 - 1000 < len(out["stdout"].encode()) <= LIMIT - 1024
    assert out["stderr"].count(NOTE) == 1
    assert len(out["stdout"].encode()) + len(out["stderr"].encode()) < LIMIT


def test_one_huge_write_multibyte_and_stderr_share_the_cap(kernel: BlockingKernelClient) -> None:
    out = run(kernel, "import sys; print('é' * 10**7); sys.stderr.write('zq' * 10**6)")
    assert len(out["stdout"].encode()) <= LIMIT - 1024
    assert set(out["stdout"]) <= {"é"}  # cut on a character boundary
    assert out["stderr"].count(NOTE) == 1
    assert "zq" not in out["stderr"]


def test_the_cap_is_per_cell_and_output_below_it_is_untouched(kernel: BlockingKernelClient) -> None:
    assert run(kernel, "print('x' * 10**6)")["stderr"].count(NOTE) == 1
    small = run(kernel, "print('hello'); import sys; print('warn', file=sys.stderr)")
    assert small == {"stdout": "hello\n", "stderr": "warn\n", "status": "ok"}


def test_subprocess_output_is_capped_and_nothing_is_left_in_the_namespace(
    kernel: BlockingKernelClient,
) -> None:
    out = run(kernel, "import os; os.system('head -c 3000000 /dev/zero | tr \"\\\\0\" y')")
    assert 0 < len(out["stdout"].encode()) <= LIMIT - 1024
    assert out["stderr"].count(NOTE) == 1
    names = set(run(kernel, "print(*globals())")["stdout"].split())
    assert "os" in names
    assert not names & {"OutputCap", "load_ipython_extension", "note", "NOTE_ROOM", "ENV", "runpy", "sys"}
    assert not names & {"Watcher", "listing", "ATTRIBUTE", "EXPRESSION"}


def changed(client: BlockingKernelClient, code: str) -> bool | None:
    """What the kernel answers, after running ``code``, to the controller's question."""
    reply = client.execute_interactive(
        code, timeout=60, user_expressions={CHANGED_KEY: CHANGED_EXPRESSION}, output_hook=lambda _: None
    )
    return workspace_changed(reply)


def test_the_kernel_says_which_cells_changed_the_workspace(kernel: BlockingKernelClient) -> None:
    assert changed(kernel, "x = 1") is True  # the first answer: nothing to compare with
    assert changed(kernel, "print(x)") is False
    assert changed(kernel, "open('a.csv', 'w').write('1')") is True
    assert changed(kernel, "open('a.csv').read()") is False
    # Same size, same second: the mtime's nanoseconds or the inode still differ.
    assert changed(kernel, "import os; open('b', 'w').write('2'); os.replace('b', 'a.csv')") is True
    assert changed(kernel, "os.makedirs('d/e'); open('d/e/f', 'w').close()") is True
    assert changed(kernel, "os.remove('d/e/f')") is True
    assert changed(kernel, "os.symlink('/etc/passwd', 'link')") is True
    assert changed(kernel, "y = 2") is False


def test_no_answer_means_unknown(kernel: BlockingKernelClient) -> None:
    assert changed(kernel, "1 / 0") is None  # a failed cell evaluates no user expression
    assert changed(kernel, "get_ipython = None") is None
    assert workspace_changed(None) is None


# The import's value is displayed nowhere: IPython's last result ``_`` is still its empty start.
LOADED = "import sys; print('colorsys' in sys.modules, [n for n in dir() if 'colorsys' in n], repr(_))"


@pytest.mark.parametrize("kernel", [("colorsys", "no_such_module_here")], indirect=True)
def test_a_warm_kernel_has_its_modules_imported_and_nothing_in_the_namespace(
    kernel: BlockingKernelClient,
) -> None:
    # A module that cannot be imported is only logged: the kernel starts, with the others.
    assert run(kernel, LOADED) == {"stdout": "True [] ''\n", "stderr": "", "status": "ok"}


def test_the_control_a_kernel_without_preimports_has_not_loaded_that_module(
    kernel: BlockingKernelClient,
) -> None:
    assert run(kernel, LOADED)["stdout"] == "False [] ''\n"
