"""Prometheus metrics, in base units (seconds, bytes) with ``_total`` counters.

One registry per app instance, so tests can run several apps in one process.
The Grafana dashboard may name only metrics defined here.
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from typing import get_args

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from controller.events import Error

START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 20, 30, 60)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Up to the longest timeout an /execute may ask for (3600 s), past the 120 s default.
LONG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120)
LLM_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
CLAIM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
FRONTENDS = ("api", "slack", "telegram", "discord")  # the sources of thread ids (controller/identity.py)
TURN_STATUSES = ("ok", "error", "aborted", "failed")
START_KINDS = ("cold", "warm", "adopted", "pool")


def build_version() -> str:
    try:
        return version("threadbox")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # The process, platform and GC collectors of the default registry, which this one replaces.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(collector)
        Gauge(
            "threadbox_build_info", "Always 1; the labels say what runs.", ["version", "python"], registry=r
        ).labels(build_version(), platform.python_version()).set(1)
        self.live = Gauge("threadbox_sandboxes_live", "Sandboxes currently running.", registry=r)
        self.queue = Gauge("threadbox_queue_length", "Turns waiting for a free sandbox slot.", registry=r)
        self.start_seconds = Histogram(
            "threadbox_sandbox_start_seconds",
            "From acquire to kernel ready, by how the sandbox was obtained: cold, warm (claimed from the pool) or adopted.",
            ["kind"],
            buckets=START_BUCKETS,
            registry=r,
        )
        self.executions = Counter(
            "threadbox_executions_total", "Code executions by final status.", ["status"], registry=r
        )
        self.execution_seconds = Histogram(
            "threadbox_execution_seconds",
            "Wall time of one code execution.",
            buckets=LONG_BUCKETS,
            registry=r,
        )
        self.start_failures = Counter(
            "threadbox_sandbox_start_failures_total",
            "Sandboxes that failed to start: for a turn by kind (cold, warm, adopted), or pool (a warm pod).",
            ["kind"],
            registry=r,
        )
        self.turns = Counter(
            "threadbox_turns_total",
            "Turns once ended, by front-end and status: ok, error, aborted (stopped or cut off) or failed.",
            ["frontend", "status"],
            registry=r,
        )
        self.turn_errors = Counter(
            "threadbox_turn_errors_total",
            "Error events of turns, by front-end and kind (exception, timeout, kernel_died, llm_failed...).",
            ["frontend", "kind"],
            registry=r,
        )
        self._zero_turn_series()
        self.turn_seconds = Histogram(
            "threadbox_turn_seconds",
            "From a turn's arrival (queueing included) to its end, by front-end.",
            ["frontend"],
            buckets=LONG_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "threadbox_http_requests_total",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "threadbox_http_request_seconds",
            "From a request's arrival to its response's last byte (a stream's whole turn), by method and route.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.llm_requests = Counter(
            "threadbox_llm_requests_total",
            "Chat completions asked of the language model, by result: ok or the error (timeout, unreachable...).",
            ["result"],
            registry=r,
        )
        self.llm_seconds = Histogram(
            "threadbox_llm_request_seconds",
            "Wall time of one streamed chat completion, retries included.",
            buckets=LLM_BUCKETS,
            registry=r,
        )
        self.llm_tokens = Counter(
            "threadbox_llm_tokens_total",
            "Tokens the language model reported, by type: prompt, completion, or cached (the part of prompt "
            "served from the provider's cache).",
            ["type"],
            registry=r,
        )
        self.llm_cost = Counter(
            "threadbox_llm_estimated_cost_total",
            "Estimated cost of the tokens turns used, from THREADBOX_PRICES, in its currency.",
            registry=r,
        )
        self.budget_refusals = Counter(
            "threadbox_budget_refusals_total",
            "Turns not run because their user's daily budget was used up, by budget: tokens or exec_seconds.",
            ["budget"],
            registry=r,
        )
        for budget in ("tokens", "exec_seconds"):  # at 0 from the start, as _zero_turn_series says why
            self.budget_refusals.labels(budget)
        self.usage_record_failures = Counter(
            "threadbox_usage_record_failures_total",
            "Turns whose usage could not be recorded in the store (the turn itself went on).",
            registry=r,
        )
        self.storage_up = Gauge(
            "threadbox_storage_up", "1 if the last check of the thread store succeeded, else 0.", registry=r
        )
        self.reaped = Counter(
            "threadbox_sandboxes_reaped_total", "Sandboxes stopped, by reason.", ["reason"], registry=r
        )
        self.persisted_bytes = Counter(
            "threadbox_persisted_bytes_total", "Bytes uploaded to the thread store.", registry=r
        )
        self.syncs_skipped = Counter(
            "threadbox_syncs_skipped_total",
            "Executions whose workspace sync was skipped: the kernel said they changed no file.",
            registry=r,
        )
        self.persist_errors = Counter(
            "threadbox_persist_errors_total", "Failed attempts to persist a workspace.", registry=r
        )
        self.pool_size = Gauge(
            "threadbox_warm_pool_size",
            "Unclaimed warm sandboxes, by state: ready (kernel up) or starting.",
            ["state"],
            registry=r,
        )
        self.pool_target = Gauge(
            "threadbox_warm_pool_target", "Configured number of warm sandboxes.", registry=r
        )
        self.pool_claims = Counter(
            "threadbox_warm_pool_claims_total",
            "Attempts to claim a warm sandbox: result hit or miss; reason says why a miss fell back to a cold start.",
            ["result", "reason"],
            registry=r,
        )
        self.pool_claim_seconds = Histogram(
            "threadbox_warm_pool_claim_seconds",
            "Time to claim and bind a warm sandbox, by result: hit or miss.",
            ["result"],
            buckets=CLAIM_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            "threadbox_event_loop_lag_seconds",
            "How much later than asked the event loop woke a periodic task; a blocked loop shows here.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.slack_events = Counter(
            "threadbox_slack_events_total", "Slack events received, by event type.", ["type"], registry=r
        )
        self.slack_handled = Counter(
            "threadbox_slack_events_handled_total",
            "Slack events once their listener is done, by outcome: answered (a turn was started), "
            "duplicate (a retry or the other delivery of one message), ignored (not for the bot).",
            ["outcome"],
            registry=r,
        )
        self.slack_answers_running = Gauge(
            "threadbox_slack_answers_running",
            "Slack answers (turns and their replies) under way.",
            registry=r,
        )
        self.slack_acks = Counter(
            "threadbox_slack_acks_total",
            "HTTP responses to Slack's Events API, by outcome: ok, retry (Slack redelivered), rejected (bad signature or body), error.",
            ["outcome"],
            registry=r,
        )
        self.slack_ack_seconds = Histogram(
            "threadbox_slack_ack_seconds",
            "From receiving a Slack request to acknowledging it (Slack retries after 3 s).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5),
            registry=r,
        )
        self.slack_errors = Counter(
            "threadbox_slack_errors_total",
            "Failures talking to Slack or answering a turn, by kind: api_call, turn_failed, stream_refused.",
            ["kind"],
            registry=r,
        )
        self.slack_feedback = Counter(
            "threadbox_slack_feedback_total",
            "Feedback buttons pressed on Slack answers, by value: good, bad.",
            ["value"],
            registry=r,
        )
        self.slack_stops = Counter(
            "threadbox_slack_stops_total",
            "Stop buttons pressed, by outcome: stopped (here), requested (through the store), refused.",
            ["outcome"],
            registry=r,
        )
        self.discord_interactions = Counter(
            "threadbox_discord_interactions_total",
            "Requests to /discord/interactions, by outcome: answered (a turn was started), duplicate "
            "(a redelivery), ping, unknown (a command threadbox does not know), rejected (bad signature or body).",
            ["outcome"],
            registry=r,
        )
        self.discord_errors = Counter(
            "threadbox_discord_errors_total",
            "Failures answering on Discord, by kind: open_failed (no thread), turn_failed, api_call.",
            ["kind"],
            registry=r,
        )
        self.telegram_updates = Counter(
            "threadbox_telegram_updates_total",
            "Telegram updates (webhook or getUpdates), by outcome: answered (a turn was started), duplicate "
            "(a redelivered update_id), ignored (not for the bot), rejected (wrong secret token or body).",
            ["outcome"],
            registry=r,
        )
        self.telegram_errors = Counter(
            "threadbox_telegram_errors_total",
            "Failures answering on Telegram, by kind: turn_failed, api_call.",
            ["kind"],
            registry=r,
        )
        self.handoffs = Counter(
            "threadbox_handoffs_total",
            "Chat threads handed to a person (to=human) or back to the assistant (to=bot), by cause: "
            "user, keyword, agent, operator, timeout.",
            ["to", "cause"],
            registry=r,
        )
        self.handoff_messages = Counter(
            "threadbox_handoff_messages_total",
            "Messages of handed-off threads, by direction: to_operator (a user's), to_user (an operator's).",
            ["direction"],
            registry=r,
        )

    def _zero_turn_series(self) -> None:
        # Series that exist from the start, at 0: a counter's first increment is then a rise
        # that rate() and the alerts see, not the first sample of a new series.
        for frontend in FRONTENDS:
            for status in TURN_STATUSES:
                self.turns.labels(frontend, status)
            for kind in get_args(Error.model_fields["kind"].annotation):
                self.turn_errors.labels(frontend, kind)
        for kind in START_KINDS:
            self.start_failures.labels(kind)
