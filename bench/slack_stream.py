"""Slack replies streamed (chat.startStream/appendStream/stopStream) against edited by chat.update.

Two controllers run side by side (``threadbox serve`` subprocesses, the direct agent), one
streaming and one with ``THREADBOX_SLACK_STREAMING=false`` (the path a workspace that refuses
streaming gets), each against its own fake Slack Web API (devkit.fake_slack). Turns alternate
between them. Each turn is a mention that starts a thread (a cold sandbox) and runs code printing
a line every half second for 10 seconds. Measured per turn, from the signed delivery:

- time to first content: the stream starts (its first task card) or the first message is posted;
- time to the first output line visible in the thread (``tick 0``), as a reader sees it;
- Web API calls until the answer is over (the controller's ``threadbox_slack_answers_running``
  is 0: uploads after the final reply count), by method.

Goal: the streamed turn makes at most half the Web API calls of the chat.update turn.

Usage: uv run python -m bench.slack_stream [--runs 5] [--seconds 10]
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import LIFECYCLE, arguments, goal, machine, summary, table, write
from controller.sandbox_env import ensure_sandbox_python
from devkit.client import api_client
from devkit.fake_slack import FakeSlack, serve_fake_slack, visible
from devkit.procserver import controller_env, running_controller
from devkit.slack_events import SlackSender, code, new_ts, slack_settings

MODES = ("streaming", "chat.update")
FIRST_LINE = "tick 0"
TURN_TIMEOUT = 120.0
IDLE = "threadbox_slack_answers_running 0.0"
UNCOUNTED = {"auth.test"}  # Bolt checks the token once per process, not per turn


@dataclass
class Watch:
    """One turn's signals, set by the fake as it applies each post, edit or stream call."""

    thread_ts: str = ""
    started: float = 0.0
    content: float | None = None
    first_line: float | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def saw(self, message: dict[str, Any]) -> None:
        if message.get("thread_ts") != self.thread_ts:
            return
        now = time.monotonic()
        self.content = self.content or now
        if self.first_line is None and FIRST_LINE in visible(message):
            self.first_line = now
        if any(b.get("type") == "context_actions" for b in message.get("blocks") or []):
            self.done.set()


@dataclass
class Mode:
    name: str
    fake: FakeSlack
    sender: SlackSender
    api: httpx.Client
    watch: Watch = field(default_factory=Watch)
    turns: list[dict[str, Any]] = field(default_factory=list)

    def saw(self, message: dict[str, Any]) -> None:
        self.watch.saw(message)  # the current turn's watch: each turn starts a new one

    def turn(self, source: str, index: int) -> None:
        self.watch = Watch(thread_ts=new_ts())
        before = len(self.fake.calls)
        self.watch.started = time.monotonic()
        self.sender.mention(f"CBENCH{index}", code(source), ts=self.watch.thread_ts)
        if not self.watch.done.wait(TURN_TIMEOUT):
            raise RuntimeError(f"{self.name}: turn {index} did not finish; calls: {self.fake.summary()}")
        self._wait_idle()
        calls = Counter(c.method for c in self.fake.calls[before:] if c.method not in UNCOUNTED)
        self.turns.append(
            {
                "first_content_s": (self.watch.content or 0) - self.watch.started,
                "first_line_s": (self.watch.first_line or 0) - self.watch.started,
                "calls": sum(calls.values()),
                "by_method": dict(calls),
            }
        )

    def _wait_idle(self) -> None:
        deadline = time.monotonic() + TURN_TIMEOUT
        while IDLE not in self.api.get("/metrics").text:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: the answer never ended")
            time.sleep(0.05)


@contextmanager
def controllers(work: Path) -> Iterator[list[Mode]]:
    python = ensure_sandbox_python()
    with ExitStack() as stack:
        modes = []
        for name in MODES:
            fake = stack.enter_context(serve_fake_slack())
            env = controller_env(
                work / name / "data",
                python,
                **slack_settings(fake, slack_update_interval=1.5),
                slack_streaming=name == "streaming",
                agent="direct",
                **LIFECYCLE,
            )
            ctl = stack.enter_context(running_controller(env, work / f"{name}.log"))
            chat = stack.enter_context(httpx.Client(base_url=ctl.chat_url, timeout=30))
            api = stack.enter_context(api_client(ctl.url))
            mode = Mode(name, fake, SlackSender(chat, chat=chat), api)
            fake.watch(mode.saw)
            modes.append(mode)
        yield modes


def run(runs: int, seconds: float) -> dict[str, Any]:
    source = f"import time\nfor i in range({round(seconds * 2)}):\n    print('tick', i, flush=True)\n    time.sleep(0.5)"
    with tempfile.TemporaryDirectory() as tmp, controllers(Path(tmp)) as modes:
        for index in range(runs):
            for mode in modes if index % 2 == 0 else reversed(modes):
                mode.turn(source, index)
    return {mode.name: mode.turns for mode in modes}


def report(
    turns: dict[str, list[dict[str, Any]]], runs: int, seconds: float, host: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    rows, figures = [], {}
    for name, results in turns.items():
        calls = [t["calls"] for t in results]
        methods = Counter[str]()
        for t in results:
            methods.update(t["by_method"])
        figures[name] = {
            "first_content_s": summary([t["first_content_s"] for t in results]),
            "first_line_s": summary([t["first_line_s"] for t in results]),
            "calls_per_turn": summary(calls),
            "calls_by_method_per_turn": {m: n / len(results) for m, n in sorted(methods.items())},
        }
        f = figures[name]
        rows.append(
            [
                name,
                f"{f['first_content_s']['p50']:.2f} s",
                f"{f['first_line_s']['p50']:.2f} s",
                f"{statistics.median(calls):g} (max {max(calls)})",
                ", ".join(f"{m} {n:g}" for m, n in f["calls_by_method_per_turn"].items()),
            ]
        )
    ratio = figures["streaming"]["calls_per_turn"]["p50"] / figures["chat.update"]["calls_per_turn"]["p50"]
    data = {"runs": runs, "seconds": seconds, "machine": host, "figures": figures, "calls_ratio": ratio}
    data["turns"] = turns
    headers = [
        "Reply",
        "First content p50",
        "First output line p50",
        "Web API calls per turn p50",
        "Calls by method, per turn",
    ]
    body = (
        f"{runs} turns of each kind, alternating; each a mention that starts a thread (a cold sandbox) "
        f"and prints a line every 0.5 s for {seconds:g} s. `THREADBOX_SLACK_UPDATE_INTERVAL` 1.5 s. "
        "A streamed card refreshes a running cell's output at most every 10 s (its final output "
        "comes with the card's completion); the chat.update reply edits at most every 1.5 s.\n\n"
        + table(headers, rows)
        + "\n\n"
        + goal("streamed calls per turn / chat.update calls per turn", ratio, 0.5)
        + "\n"
    )
    return data, body


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--runs", type=int, default=5, help="turns of each kind (default 5)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each turn prints (default 10)")
    args = parser.parse_args()
    host = machine()  # its load average at the start
    data, body = report(run(args.runs, args.seconds), args.runs, args.seconds, host)
    write("slack_stream", "Slack: streamed replies against chat.update", data, body, save=not args.no_save)


if __name__ == "__main__":
    main()
