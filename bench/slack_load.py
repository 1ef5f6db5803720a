"""Slack under load: N threads x M turns through the Slack front-end, with Slack's retries injected.

A fake Slack Web API (devkit.fake_slack) and ``threadbox serve`` in a subprocess, its Slack
front-end pointed at the fake (HTTP events, the direct agent: a message's fenced code runs as
it is). Each thread starts with an ``app_mention`` and goes on with replies in the thread, and
every message prints a token of its own. A fraction of the deliveries are delivered again as
Slack retries them (the same event_id, ``X-Slack-Retry-Num: 1``): at the same time as the
original, right after its ack, or after the answer. A thread's next message goes out once the
answer to the previous one shows in the fake (its watch signal, no polling). At the end, once
the controller's metrics say every delivery was handled and no answer is under way, each
thread's bot replies must hold its own tokens, each once and in order: mixed / lost /
duplicated replies are counted, goal 0 / 0 / 0, and failed turns (an error reply in place of
the output, e.g. a pod that could not start) apart. ``/healthz`` is polled throughout.

There are more threads than ``--max-sandboxes``, so sandboxes are evicted and restored in the
middle of threads. Threads are spread over ``--teams`` workspaces: Slack allows about 50
``chat.update`` a minute per workspace and the controller keeps to that, so with one workspace
the run would measure Slack's rate limit, not the controller.

Usage: uv run python -m bench.slack_load [--threads 200] [--turns 5] [--backend local|kubernetes]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from bench.common import arguments, backend_settings, goal, machine, summary, table, write
from controller.config import Settings
from controller.sandbox_env import ensure_sandbox_python
from devkit.client import api_client
from devkit.fake_slack import BOT_USER_ID, FakeSlack, serve_fake_slack, visible
from devkit.load import HealthPoller
from devkit.procserver import controller_env, running_controller
from devkit.slack_events import SlackSender, code, message_body, slack_settings

CHANNEL = "CLOAD"
TOKEN = "tok-{thread}-{turn}-x"
TOKEN_RE = re.compile(r"tok-(\d+)-(\d+)-x")
RETRY_MODES = ("concurrent", "after_ack", "after_answer")
ACK_DEADLINE = 3.0  # Slack retries a delivery it has no 200 for within 3 s
ANSWER_TIMEOUT = 600.0  # one answer, on 2 shared cores, behind queued turns and a restore
SETTLE_TIMEOUT = 300.0
RUN_TIMEOUT = 3 * 3600.0
EXEC_TIMEOUT = 120
# Tiny pod requests, as in bench.concurrency: the 2-core node, shared with other people's tests,
# schedules only a handful of pods at the default 250m, and an unschedulable pod fails its turn.
PODS = {"sandbox_cpu_request": "10m", "sandbox_memory_request": "64Mi"}
STALL = "the event loop has not run for"  # the controller's watchdog line, with a stack after it
ROOT = Path(__file__).resolve().parents[1]
# Metric families kept in the result: the Slack front-end's, and what the sandboxes went through.
METRICS = (
    "threadbox_slack",
    "threadbox_sandbox_start_seconds",
    "threadbox_sandboxes_reaped",
    "threadbox_executions",
    "threadbox_persist_errors",
)


@dataclass(frozen=True)
class Load:
    threads: int
    turns: int
    retry_fraction: float
    teams: int
    seed: int


def said(message: dict[str, Any]) -> str:
    """What a bot message says: its text, a stream's Markdown and its task cards' output, but not
    the code a card shows (the code holds its turn's token too)."""
    tasks = {key: {**task, "details": ""} for key, task in message.get("tasks", {}).items()}
    return visible({**message, "tasks": tasks})


class Answers:
    """Tokens seen so far in the bot's replies, per thread root, fed by the fake's watch signal."""

    def __init__(self) -> None:
        self._seen: dict[str, set[str]] = defaultdict(set)
        self._changed = threading.Condition()

    def on_message(self, message: dict[str, Any]) -> None:
        if not (message.get("bot_id") and message.get("thread_ts")):
            return
        with self._changed:
            self._seen[message["thread_ts"]].update(m.group(0) for m in TOKEN_RE.finditer(said(message)))
            self._changed.notify_all()

    def wait(self, root_ts: str, token: str, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: token in self._seen[root_ts], timeout)


@dataclass
class Tally:
    """What the client side saw, from every client thread."""

    acks: list[float] = field(default_factory=list)
    bad_acks: list[str] = field(default_factory=list)
    retries: Counter[str] = field(default_factory=Counter)
    turn_seconds: list[float] = field(default_factory=list)
    stalled: list[str] = field(default_factory=list)
    roots: dict[int, str] = field(default_factory=dict)
    sent: Counter[int] = field(default_factory=Counter)  # messages per thread (not their retries)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, response: httpx.Response, what: str) -> None:
        with self.lock:
            self.acks.append(response.elapsed.total_seconds())
            if response.status_code != 200:
                self.bad_acks.append(f"{what}: HTTP {response.status_code} {response.text[:200]}")


class Driver:
    """Runs one Slack thread's turns, message after answered message."""

    def __init__(self, chat_url: str, load: Load, answers: Answers, tally: Tally) -> None:
        self.chat_url = chat_url
        self.load = load
        self.answers = answers
        self.tally = tally

    def thread(self, index: int) -> None:
        rng = random.Random(f"{self.load.seed}/{index}")  # each thread's plan, whatever the scheduling
        team = f"T{index % self.load.teams:04d}LOAD"
        with httpx.Client(base_url=self.chat_url, timeout=httpx.Timeout(30)) as chat:
            sender = SlackSender(chat, chat=chat)
            root = ""
            for turn in range(self.load.turns):
                token = TOKEN.format(thread=index, turn=turn)
                body = self._body(code(f"print({token!r})"), root, team)
                if not root:
                    root = body["event"]["ts"]
                    with self.tally.lock:
                        self.tally.roots[index] = root
                mode = rng.choice(RETRY_MODES) if rng.random() < self.load.retry_fraction else None
                with self.tally.lock:
                    self.tally.sent[index] += 1
                if not self._turn(sender, body, mode, root, token):
                    return

    @staticmethod
    def _body(text: str, root: str, team: str) -> dict[str, Any]:
        if root:
            return message_body("message", CHANNEL, text, thread_ts=root, team=team)
        return message_body("app_mention", CHANNEL, f"<@{BOT_USER_ID}> {text}", team=team)

    def _turn(
        self, sender: SlackSender, body: dict[str, Any], mode: str | None, root: str, token: str
    ) -> bool:
        """Deliver one message (and its retry, if ``mode``), then wait for its answer; False if none came."""
        started = time.monotonic()
        if mode == "concurrent":
            with ThreadPoolExecutor(2) as pair:
                list(pair.map(lambda retry: self._deliver(sender, body, retry, token), (None, 1)))
        else:
            self._deliver(sender, body, None, token)
            if mode == "after_ack":
                self._deliver(sender, body, 1, token)
        if not self.answers.wait(root, token, ANSWER_TIMEOUT):
            with self.tally.lock:
                self.tally.stalled.append(f"{token}: no answer in {ANSWER_TIMEOUT:g}s (thread {root})")
            return False
        with self.tally.lock:
            self.tally.turn_seconds.append(time.monotonic() - started)
            if mode:
                self.tally.retries[mode] += 1
        if mode == "after_answer":
            self._deliver(sender, body, 1, token)
        return True

    def _deliver(self, sender: SlackSender, body: dict[str, Any], retry: int | None, token: str) -> None:
        self.tally.ack(sender.deliver(body, retry=retry), f"{token} retry={retry}")


def judge(index: int, sent: int, turns: int, replies: list[str]) -> Counter[str]:
    """One thread's bot replies against the ``sent`` messages (of ``turns``) it sent. A reply
    without a token is an error the user was told about (``failed``); a sent turn with neither
    is ``lost``."""
    found = [(int(t), int(n)) for text in replies for t, n in TOKEN_RE.findall(text)]
    own = [turn for thread, turn in found if thread == index]
    missing = [turn for turn in range(sent) if turn not in own]
    untokened = sum(1 for text in replies if not TOKEN_RE.search(text))
    failed = min(len(missing), untokened)
    return Counter(
        mixed=len(found) - len(own),
        lost=len(missing) - failed,
        failed=failed,
        # an error reply beyond the turns it could stand for answers some turn a second time
        duplicated=len(own) - len(set(own)) + untokened - failed,
        out_of_order=int(own != sorted(own)),
        unsent=turns - sent,
        replies=len(replies),
    )


def check(fake: FakeSlack, load: Load, tally: Tally) -> dict[str, Any]:
    """Every thread's replies judged: the counts, and each faulty thread's replies as evidence."""
    counts = Counter[str]()
    problems: list[str] = []
    for index in range(load.threads):
        root = tally.roots.get(index, "")
        replies = [said(m) for m in fake.messages_in_thread(CHANNEL, root) if m.get("bot_id")] if root else []
        verdict = judge(index, tally.sent[index], load.turns, replies)
        counts.update(verdict)
        if any(n for key, n in verdict.items() if key != "replies"):
            problems.append(f"thread {index} (root {root or 'none'}): {dict(+verdict)}, replies {replies}")
    return {"counts": dict(counts), "problems": problems}


def metric_samples(api: httpx.Client) -> dict[str, float]:
    """The controller's samples of the METRICS families, keyed ``name{label values}``."""
    families = text_string_to_metric_families(api.get("/metrics").text)
    return {
        f"{s.name}{{{','.join(s.labels.values())}}}": s.value
        for f in families
        if f.name.startswith(METRICS)
        for s in f.samples
        if not s.name.endswith(("_created", "_bucket"))
    }


def by_label(samples: dict[str, float], name: str) -> dict[str, int]:
    """One metric's samples by label value, from ``metric_samples``."""
    return {key[len(name) + 1 : -1]: int(v) for key, v in samples.items() if key.startswith(name + "{")}


def settled(samples: dict[str, float]) -> bool:
    """Every acknowledged delivery has been through its listener and no answer is under way."""
    acks = by_label(samples, "threadbox_slack_acks_total")
    handled = sum(by_label(samples, "threadbox_slack_events_handled_total").values())
    return (
        acks.get("ok", 0) + acks.get("retry", 0) == handled
        and samples.get("threadbox_slack_answers_running{}") == 0
    )


def wait_settled(api: httpx.Client) -> dict[str, float]:
    """The final samples, once settled; the controller gives no push signal, so this polls."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while not settled(samples := metric_samples(api)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"not settled after {SETTLE_TIMEOUT:g}s: {samples}")
        time.sleep(0.2)  # the poll period of a condition with no signal
    return samples


def env_values(settings: Settings) -> dict[str, Any]:
    """The settings given explicitly, as ``controller_env`` overrides (lists comma-separated)."""

    def text(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        return ",".join(map(str, value)) if isinstance(value, list) else value

    return {name: text(getattr(settings, name)) for name in settings.model_fields_set}


def source_state() -> dict[str, Any]:
    """The commit the controller ran from, and its files changed in the working tree (a shared
    tree: other people's edits in progress run too)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, timeout=30).stdout

    return {
        "head": git("rev-parse", "HEAD").strip(),
        "uncommitted": git("status", "--porcelain", "controller").splitlines(),
    }


def loop_stalls(log: Path) -> list[str]:
    """The controller's own reports of a blocked event loop, each with the innermost frame of
    threadbox's code in the stack it carries (deeper frames are libraries and imports). A JSON
    log line carries the report and its stack in its message; a text log has them on lines."""
    stalls: list[str] = []
    in_stall = False  # until the next line that is no stack line: another record
    for line in log.read_text(errors="replace").splitlines():
        for text in _log_message(line).splitlines():
            if text.startswith(STALL):
                stalls.append(text)
                in_stall = True
            elif not text.startswith("  "):
                in_stall = False
            elif in_stall and text.startswith(f'  File "{ROOT}/controller/'):
                stalls[-1] = stalls[-1].split(" | ")[0] + " | " + text.strip()
    return stalls


def _log_message(line: str) -> str:
    try:
        record = json.loads(line)
    except ValueError:
        return line
    return str(record.get("message", "")) if isinstance(record, dict) else line


def drive(chat_url: str, load: Load, answers: Answers, clients: int) -> Tally:
    tally = Tally()
    driver = Driver(chat_url, load, answers, tally)
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(driver.thread, i) for i in range(load.threads)]
        _, pending = wait(futures, timeout=RUN_TIMEOUT)
        if pending:
            raise RuntimeError(f"{len(pending)} threads still running after {RUN_TIMEOUT:g}s")
        for f in futures:
            f.result()  # a client's own failure (not an unanswered turn) stops the benchmark
    return tally


def run(args: argparse.Namespace, load: Load, work: Path) -> dict[str, Any]:
    source = source_state()  # what the controller subprocess is about to import
    with backend_settings(args.backend, "slack-load", work, **PODS) as base, serve_fake_slack() as fake:
        answers = Answers()
        fake.watch(answers.on_message)
        overrides = env_values(base)
        env = controller_env(
            overrides.pop("data_dir"),
            ensure_sandbox_python(),
            **overrides,
            **slack_settings(fake),
            agent="direct",
            max_sandboxes=args.max_sandboxes,
            exec_timeout=EXEC_TIMEOUT,
        )
        with (
            running_controller(env, work / "controller.log") as ctl,
            api_client(ctl.url) as api,
            HealthPoller(ctl.url) as poller,
        ):
            started = time.monotonic()
            tally = drive(ctl.chat_url, load, answers, args.clients)
            took = time.monotonic() - started
            samples = wait_settled(api)
        verdict = check(fake, load, tally)
        stalls = loop_stalls(work / "controller.log")
    return {
        "took_s": round(took, 1),
        "turns_per_s": round(len(tally.turn_seconds) / took, 2),
        "turn_s": summary(tally.turn_seconds) if tally.turn_seconds else {},
        "ack_s": summary(tally.acks),
        "acks_over_deadline": sum(1 for a in tally.acks if a > ACK_DEADLINE),
        "bad_acks": tally.bad_acks[:20],
        "retries": dict(tally.retries),
        "stalled": tally.stalled[:20],
        "healthz": {
            "worst_s": round(poller.worst, 3),
            "polls": poller.count,
            "failures": poller.failures[:20],
        },
        "metrics": samples,
        "loop_stalls": stalls[:20],
        "source": source,
        **verdict,
    }


def report(args: argparse.Namespace, load: Load, result: dict[str, Any], m: dict[str, Any]) -> None:
    c, samples = Counter(result["counts"]), result["metrics"]
    row = [args.backend, f"{load.threads} x {load.turns}", sum(result["retries"].values())]
    row += [c["mixed"], c["lost"], c["duplicated"], c["failed"], f"{result['took_s']:.0f} s"]
    row += [
        f"{result['turns_per_s']:.2f}",
        f"{result['turn_s'].get('p50', 0):.2f} / {result['turn_s'].get('p95', 0):.2f} s",
    ]
    row += [f"{result['healthz']['worst_s']:.3f} s", f"{result['ack_s']['max']:.3f} s"]
    headers = ["Backend", "Threads x turns", "Retries", "Mixed", "Lost", "Duplicated", "Failed", "Time"]
    headers += ["Turns/s", "Turn p50 / p95", "/healthz worst", "Ack worst"]
    body = f"""{table(headers, [row])}

{goal("mixed + lost + duplicated replies", c["mixed"] + c["lost"] + c["duplicated"], 0)}
{goal("/healthz worst latency", result["healthz"]["worst_s"], 1.0, " s")}
{goal("ack latency (Slack retries after 3 s)", result["ack_s"]["max"], ACK_DEADLINE, " s")}

Parameters: {vars(args)}; pods request {PODS} on Kubernetes. Retries injected, by mode: {result["retries"]}.
Failed: turns answered with an error instead of their output (the user was told). Out of order
{c["out_of_order"]}; turns never sent (their thread stopped at an unanswered turn) {c["unsent"]};
turns with no answer within {ANSWER_TIMEOUT:g} s {len(result["stalled"])}; non-200 acks
{len(result["bad_acks"])}. `/healthz` polled {result["healthz"]["polls"]} times;
the controller logged {len(result["loop_stalls"])} event loop stalls. Sandboxes started, by
kind: {by_label(samples, "threadbox_sandbox_start_seconds_count")}; stopped, by reason:
{by_label(samples, "threadbox_sandboxes_reaped_total")}.

Problems: {"; ".join(result["problems"][:20]) or "none."}
"""
    name = "slack_load" if args.backend == "local" else f"slack_load_{args.backend}"
    title = f"Slack load on the {args.backend} backend, {load.threads} threads x {load.turns} turns"
    write(name, title, {"machine": m, "parameters": vars(args), **result}, body, save=not args.no_save)


def main() -> int:
    parser = arguments(__doc__, prog="python -m bench.slack_load")
    parser.add_argument(
        "--backend",
        choices=("local", "kubernetes"),
        default="local",
        help="local: bubblewrap kernels on this host; kubernetes: pods on the cluster of $KUBECONFIG, "
        "in a fresh namespace (needs hack/cluster/up and the sandbox image); default local",
    )
    parser.add_argument("--threads", type=int, default=200, help="Slack threads (default 200)")
    parser.add_argument("--turns", type=int, default=5, help="messages per thread (default 5)")
    parser.add_argument(
        "--retry-fraction",
        type=float,
        default=0.2,
        help="deliveries sent again as Slack retries (default 0.2)",
    )
    parser.add_argument(
        "--max-sandboxes",
        type=int,
        default=20,
        help="the controller's sandbox cap, below --threads (default 20)",
    )
    parser.add_argument("--clients", type=int, default=24, help="threads driven at once (default 24)")
    parser.add_argument(
        "--teams", type=int, default=20, help="workspaces the threads spread over (default 20)"
    )
    parser.add_argument("--seed", type=int, default=12, help="seed of the retry plan (default 12)")
    args = parser.parse_args()
    load = Load(args.threads, args.turns, args.retry_fraction, args.teams, args.seed)
    m = machine()
    work = Path(tempfile.mkdtemp(prefix="slack-load-"))
    try:
        result = run(args, load, work)
    except BaseException:
        print(f"threadbox: the controller's log and data are kept in {work}")
        raise
    report(args, load, result, m)
    if result["problems"] or result["stalled"] or result["bad_acks"]:
        print(f"threadbox: problems found; the controller's log and data are kept in {work}")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
