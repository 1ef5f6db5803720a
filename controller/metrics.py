"""Prometheus metrics, in base units (seconds, bytes) with ``_total`` counters.

One registry per app instance, so tests can run several apps in one process.
The Grafana dashboard may name only metrics defined here.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 20, 30, 60)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
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
            "threadbox_execution_seconds", "Wall time of one code execution.", registry=r
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
            "Failures talking to Slack or answering a turn, by kind: api_call, turn_failed.",
            ["kind"],
            registry=r,
        )
