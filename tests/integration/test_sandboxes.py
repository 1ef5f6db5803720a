"""Issue acceptance for the core, through the real HTTP API with real kernels."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import threading
import time
from typing import Any

import pytest

from tests.support.client import create_thread, errors, run, stdout
from tests.support.poll import until

pytestmark = pytest.mark.integration

PLOT = """
import matplotlib.pyplot as plt
plt.plot([1, 2, 3], [3, 1, 2])
plt.show()
"""


def test_threads_are_isolated_and_plots_arrive_as_png(api: Any) -> None:
    client = api()
    a, b = create_thread(client, "a"), create_thread(client, "b")
    for tid, content in ((a, "from-a"), (b, "from-b")):
        events = run(client, tid, f"open('out.csv', 'w').write('{content}'); secret = '{content}'")
        assert events[-1] == {**events[-1], "type": "done", "status": "ok"}
        assert {"type": "files", "changed": ["out.csv"], "deleted": [], "refused": {}} in events
    for tid, content in ((a, "from-a"), (b, "from-b")):
        assert stdout(run(client, tid, "print(open('out.csv').read(), secret)")) == f"{content} {content}\n"
        assert client.get(f"/threads/{tid}/files/out.csv").content == content.encode()
    images = [e for e in run(client, a, PLOT) if e["type"] == "display" and "image/png" in e["data"]]
    assert len(images) == 1
    assert base64.b64decode(images[0]["data"]["image/png"]).startswith(b"\x89PNG")


def test_kernel_env_holds_no_controller_secret(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADBOX_SLACK_BOT_TOKEN_PROBE", "xoxb-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    client = api()
    tid = create_thread(client, "env")
    out = stdout(run(client, tid, "import os, sys; print(sorted(os.environ)); print(sys.prefix)"))
    assert "xoxb-secret" not in out and "OPENAI_API_KEY" not in out and "THREADBOX" not in out
    assert "sandbox-env" in out  # the lean env, not the controller's venv
    assert stdout(run(client, tid, "import importlib.util as u; print(u.find_spec('fastapi'))")) == "None\n"


def _pid(client: Any, tid: str) -> int:
    return int(client.runtime.manager._live[tid].info.pid)


def test_killed_kernel_ends_the_turn_and_next_turn_restores(api: Any) -> None:
    client = api()
    tid = create_thread(client, "kill")
    run(client, tid, "open('keep.txt', 'w').write('kept'); x = 1")
    pid = _pid(client, tid)
    threading.Timer(1.5, os.kill, (pid, signal.SIGKILL)).start()
    started = time.monotonic()
    events = run(client, tid, "import time\nfor i in range(60):\n    print(i, flush=True); time.sleep(0.5)")
    assert time.monotonic() - started < 20  # detected, not hung
    [err] = errors(events)
    assert err["kind"] == "kernel_died" and "fresh kernel" in err["evalue"]
    assert events[-1]["type"] == "done" and events[-1]["status"] == "error"
    after = run(client, tid, "print(open('keep.txt').read()); print('x' in dir())")
    assert stdout(after) == "kept\nFalse\n"
    assert _pid(client, tid) != pid


def test_timeout_interrupts_and_keeps_state(api: Any) -> None:
    client = api(exec_timeout=2)
    tid = create_thread(client, "timeout")
    run(client, tid, "kept = 41")
    events = run(client, tid, "while True: pass")
    [err] = errors(events)
    assert err["kind"] == "timeout" and "interrupted" in err["evalue"]
    assert events[-1]["status"] == "aborted"
    assert stdout(run(client, tid, "print(kept + 1)")) == "42\n"


def test_unstoppable_code_restarts_the_kernel(api: Any) -> None:
    client = api(exec_timeout=1, interrupt_grace=1)
    tid = create_thread(client, "stuck")
    run(client, tid, "open('f.txt', 'w').write('ok'); v = 1")
    code = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: time.sleep(0.01)"
    events = run(client, tid, code)
    [err] = errors(events)
    assert err["kind"] == "timeout" and "restarted" in err["evalue"]
    assert stdout(run(client, tid, "print(open('f.txt').read(), 'v' in dir())")) == "ok False\n"


def test_shutdown_persists_files_written_after_the_turn(make_settings: Any) -> None:
    from controller.runtime import build_runtime

    async def scenario() -> list[str]:
        rt = build_runtime(make_settings())
        await rt.start()
        code = "import threading\nthreading.Timer(0.5, lambda: open('late.txt', 'w').write('l')).start()"
        async for _ in rt.manager.run("t-late", code):
            pass
        info = await rt.backend.find("t-late")
        assert info is not None and info.workspace is not None
        late = info.workspace / "late.txt"
        await until(late.exists, 30)  # written by the kernel's timer, after the turn
        await rt.close()
        return [f.name for f in rt.store.list_files("t-late")]

    assert asyncio.run(scenario()) == ["late.txt"]
