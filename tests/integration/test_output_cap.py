"""Output per execution is capped, and the controller's memory does not grow with it.

Against a controller in a subprocess (devkit/procserver.py), whose peak resident
memory (VmHWM) is read before and after. Two sandboxes print 500 MB each at once; a hostile
cell publishes one huge IOPub message itself, past the kernel's own cap.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from devkit.client import api_client
from devkit.load import HealthPoller, stream
from devkit.procserver import Controller, controller_env, running_controller
from tests.support.client import create_thread

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MiB = 2**20
CAP = 4 * MiB
GROWTH_LIMIT = 64 * MiB
NOTE = "[output limit]"
PRINT_500MB = "import sys\nchunk = 'y' * (1 << 20)\nfor _ in range(500):\n    sys.stdout.write(chunk)\n"
# Past the kernel's own cap: the message is built and sent by hand, with this turn as parent.
HOSTILE = (
    "k = get_ipython().kernel\n"
    "k.session.send(k.iopub_socket, 'stream', {'name': 'stdout', 'text': 'h' * (64 << 20)},"
    " parent=k.get_parent())\n"
)


def client(ctl: Controller) -> httpx.Client:
    return api_client(ctl.url)


def warm_threads(ctl: Controller, names: list[str]) -> list[str]:
    """Threads with a running sandbox each, so the memory measured next is the output's alone."""
    with client(ctl) as http:
        ids = [create_thread(http, name) for name in names]
        for thread_id in ids:
            assert stream(http, thread_id, "print('ready')")[-1]["status"] == "ok"
    return ids


def turn(ctl: Controller, thread_id: str, code: str) -> list[dict[str, Any]]:
    with client(ctl) as http:
        return stream(http, thread_id, code)


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in events if e["type"] in ("stdout", "stderr"))


def concurrent_turns(ctl: Controller, code: str, count: int) -> tuple[list[list[dict[str, Any]]], int]:
    """``count`` turns of ``code`` at once in threads of their own; returns them and the VmHWM growth."""
    ids = warm_threads(ctl, [f"out-{i}" for i in range(count)])
    before = ctl.peak_rss_bytes()
    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(lambda tid: turn(ctl, tid, code), ids))
    return results, ctl.peak_rss_bytes() - before


def test_two_500mb_outputs_stop_at_the_cap_once_and_memory_stays_flat(
    tmp_path: Path, sandbox_python: Path
) -> None:
    env = controller_env(tmp_path / "data", sandbox_python, max_output_bytes=CAP)
    with running_controller(env, tmp_path / "controller.log") as ctl, HealthPoller(ctl.url) as poller:
        results, grown = concurrent_turns(ctl, PRINT_500MB, 2)
    print(f"500 MB x 2: VmHWM grew {grown / MiB:.1f} MiB; /healthz worst {poller.worst:.3f}s")
    for events in results:
        assert [e["type"] for e in events].count("done") == 1 and events[-1]["type"] == "done"
        assert events[-1]["status"] == "ok"
        text = text_of(events)
        assert text.count(NOTE) == 1
        assert CAP - 64 * 1024 < len(text.encode()) <= CAP
    assert grown < GROWTH_LIMIT
    assert poller.worst < 1.0 and poller.failures == []


def test_positive_control_the_measurement_sees_a_large_allowed_output(
    tmp_path: Path, sandbox_python: Path
) -> None:
    """The same measurement with the cap raised to 300 MiB: 200 MB printed does show up in VmHWM."""
    env = controller_env(tmp_path / "data", sandbox_python, max_output_bytes=300 * MiB)
    with running_controller(env, tmp_path / "controller.log") as ctl:
        results, grown = concurrent_turns(ctl, "print('z' * (200 << 20))", 1)
    print(f"200 MB allowed: VmHWM grew {grown / MiB:.1f} MiB")
    assert len(text_of(results[0])) > 200 * 10**6
    assert grown > GROWTH_LIMIT


def test_a_hostile_kernel_sending_one_huge_message_cannot_grow_the_controller(
    tmp_path: Path, sandbox_python: Path
) -> None:
    env = controller_env(tmp_path / "data", sandbox_python, max_output_bytes=CAP, exec_timeout=120)
    with running_controller(env, tmp_path / "controller.log") as ctl, HealthPoller(ctl.url) as poller:
        [events], grown = concurrent_turns(ctl, HOSTILE, 1)
        with client(ctl) as http:
            [thread_id] = warm_threads(ctl, ["out-0"])
            after = stream(http, thread_id, "print('still here')")  # IOPub reconnected
    print(f"hostile 64 MiB message: VmHWM grew {grown / MiB:.1f} MiB; turn took {events[-1]['seconds']:.1f}s")
    assert [e["type"] for e in events].count("done") == 1 and events[-1]["type"] == "done"
    assert events[-1]["seconds"] < 30  # ended by the shell reply, not by the 120 s timeout
    assert "h" * 1000 not in text_of(events)
    assert text_of(events).count("[output lost]") == 1
    assert grown < GROWTH_LIMIT
    assert text_of(after) == "still here\n"
    assert poller.worst < 1.0 and poller.failures == []


def test_displays_past_the_cap_are_cut_by_the_controller_with_one_note(
    tmp_path: Path, sandbox_python: Path
) -> None:
    """The kernel caps only what it prints; rich output is counted and cut by the controller."""
    env = controller_env(tmp_path / "data", sandbox_python, max_output_bytes=1 * MiB)
    code = "for i in range(100):\n    display({'text/plain': str(i) * 50_000}, raw=True)\nprint('end')"
    with running_controller(env, tmp_path / "controller.log") as ctl:
        [events], _ = concurrent_turns(ctl, code, 1)
    displays = [e for e in events if e["type"] == "display"]
    assert 15 <= len(displays) <= 21  # 50 kB each under a 1 MiB cap
    assert text_of(events).count(NOTE) == 1 and "end" not in text_of(events)
    assert [e["type"] for e in events][-1] == "done" and events[-1]["status"] == "ok"
