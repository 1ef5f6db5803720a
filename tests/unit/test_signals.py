"""Metrics and logs as operators get them: labels with no identities, route templates,
buckets that reach the timeouts, turn context on log lines, and no secret in any line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from controller import cli, logsetup
from controller.agent.llm import LlmCall
from controller.config import Settings
from controller.events import Done, Error, Event
from controller.httpmetrics import install
from controller.identity import ThreadKey
from controller.logsetup import REDACTED, JsonFormatter, Redactor, TextFormatter, configure, secrets_of
from controller.metrics import Metrics
from controller.turncontext import TurnScope, frontend_of

# A label with any of these in its name would carry a thread, user or file.
IDENTITY_WORDS = ("thread", "user", "file", "name", "path", "id", "channel", "team", "workspace", "token")
THREAD = "api-abcdefghijklmnop"


def label_names(metrics: Metrics) -> dict[str, tuple[str, ...]]:
    return {
        collector._name: tuple(collector._labelnames)  # type: ignore[attr-defined]
        for collector in metrics.registry._collector_to_names
        if hasattr(collector, "_labelnames")
    }


def test_no_metric_label_names_a_thread_user_or_file() -> None:
    labels = label_names(Metrics())
    assert len(labels) > 20, labels  # the scan sees the metrics
    bad = {m: names for m, names in labels.items() if any(w in n for n in names for w in IDENTITY_WORDS)}
    assert bad == {}


def test_execution_buckets_reach_the_longest_timeout() -> None:
    metrics = Metrics()
    metrics.execution_seconds.observe(Settings().exec_timeout)
    value = metrics.registry.get_sample_value("threadbox_execution_seconds_bucket", {"le": "120.0"})
    assert value == 1
    assert metrics.registry.get_sample_value("threadbox_execution_seconds_bucket", {"le": "3600.0"}) == 1


def test_build_info_and_the_process_collector_are_exported() -> None:
    registry = Metrics().registry
    [info] = [f for f in registry.collect() if f.name == "threadbox_build_info"]
    assert info.samples[0].value == 1 and set(info.samples[0].labels) == {"version", "python"}
    assert registry.get_sample_value("process_resident_memory_bytes")
    assert registry.get_sample_value("process_cpu_seconds_total") is not None


async def test_http_requests_are_counted_by_route_template_never_raw_path() -> None:
    app, metrics = FastAPI(), Metrics()

    @app.get("/threads/{thread_id}/files/{name:path}")
    async def download(thread_id: str, name: str) -> dict[str, str]:
        return {"name": name}

    install(app, metrics)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get(f"/threads/{THREAD}/files/secret.txt")).status_code == 200
        assert (await client.get("/nope/x")).status_code == 404
    sample = metrics.registry.get_sample_value
    route = "/threads/{thread_id}/files/{name:path}"
    assert sample("threadbox_http_requests_total", {"method": "GET", "route": route, "status": "200"}) == 1
    assert sample("threadbox_http_requests_total", {"method": "GET", "route": "unmatched", "status": "404"})
    assert sample("threadbox_http_request_seconds_count", {"method": "GET", "route": route}) == 1
    exposition = "\n".join(str(s) for f in metrics.registry.collect() for s in f.samples)
    assert THREAD not in exposition and "secret.txt" not in exposition


def test_llm_calls_are_counted_by_result_with_their_tokens() -> None:
    metrics = Metrics()
    for ename in ("LLMTimeout", "LLMRateLimited", None):
        call = LlmCall(metrics, "gpt-4o-mini")
        if ename:
            call.failed(Error(kind="llm_failed", ename=ename, evalue="v"))
        else:
            call.tokens(12, 3)
        call.end()
    sample = metrics.registry.get_sample_value
    results = {
        r: sample("threadbox_llm_requests_total", {"result": r}) for r in ("timeout", "rate_limited", "ok")
    }
    assert results == {"timeout": 1, "rate_limited": 1, "ok": 1}
    assert sample("threadbox_llm_tokens_total", {"type": "prompt"}) == 12
    assert sample("threadbox_llm_request_seconds_count") == 3


def test_the_front_end_comes_from_the_thread_id() -> None:
    assert frontend_of(THREAD) == "api"
    assert frontend_of("slack-abcdefghijklmnop") == "slack"
    assert frontend_of("not a thread id") == "other"


@pytest.mark.parametrize("source", ["api", "slack", "telegram", "discord"])
def test_every_front_ends_turn_series_start_at_zero(source: str) -> None:
    """A series born at its first turn hides that rise from rate() and the turn-error alert."""
    frontend = frontend_of(ThreadKey(source, "w", "c", "t").id)
    sample = Metrics().registry.get_sample_value
    assert sample("threadbox_turns_total", {"frontend": frontend, "status": "error"}) == 0
    assert sample("threadbox_turn_errors_total", {"frontend": frontend, "kind": "timeout"}) == 0


class _Configured(Exception):
    """Stops ``threadbox serve``/``dev`` right after it configured logging."""


@pytest.mark.parametrize(("command", "style"), [("serve", "json"), ("dev", "text")])
def test_the_log_format_defaults_to_json_for_serve_and_text_for_dev(
    command: str, style: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("THREADBOX_LOG_FORMAT", raising=False)
    chosen: list[str] = []

    def configure(settings: Settings, default: str) -> None:
        chosen.append(settings.log_format or default)
        raise _Configured

    monkeypatch.setattr(logsetup, "configure", configure)
    with pytest.raises(_Configured):
        cli.main([command, "--data-dir", str(tmp_path)])
    assert chosen == [style]


def _logger(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test-signals-{id(out)}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, out


async def test_every_line_of_a_turn_says_its_thread_turn_and_front_end() -> None:
    metrics = Metrics()
    logger, out = _logger(JsonFormatter(Redactor([])))

    async def turn() -> AsyncIterator[Event]:
        scope = TurnScope(THREAD, metrics)
        logger.info("in the turn")
        await asyncio.to_thread(logger.info, "in a thread of the turn")
        for event in (Error(kind="timeout", ename="E", evalue="v"), Done(status="error")):
            scope.saw(event)
            yield event
        scope.end(failed=False)

    async def outside() -> None:
        logger.info("outside")

    _ = [e async for e in turn()]
    await asyncio.create_task(outside())
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["in the turn", "in a thread of the turn", "outside"]
    inside, outside_line = lines[:2], lines[2]
    assert {(x["thread_id"], x["frontend"]) for x in inside} == {(THREAD, "api")}
    assert len({x["turn_id"] for x in inside}) == 1
    assert "thread_id" not in outside_line
    sample = metrics.registry.get_sample_value
    assert sample("threadbox_turns_total", {"frontend": "api", "status": "error"}) == 1
    assert sample("threadbox_turn_errors_total", {"frontend": "api", "kind": "timeout"}) == 1


SECRETS = {"admin_token": "tbx_adminsecretvalue0001", "llm_api_key": "sk-llm-secret-value-0002"}


@pytest.mark.parametrize("formatter", [JsonFormatter, TextFormatter])
def test_no_secret_reaches_a_log_line(formatter: type[JsonFormatter] | type[TextFormatter]) -> None:
    settings = Settings(
        admin_token=SecretStr(SECRETS["admin_token"]), llm_api_key=SecretStr(SECRETS["llm_api_key"])
    )
    logger, out = _logger(formatter(Redactor(secrets_of(settings))))
    logger.info("key %s", SECRETS["llm_api_key"])
    logger.info("Authorization: Bearer abc.def-ghi")
    logger.warning("slack xoxb-1-2-three and a user token tbx_userToken123456")
    try:
        raise RuntimeError(SECRETS["admin_token"])
    except RuntimeError:
        logger.exception("failed")
    text = out.getvalue()
    for secret in [*SECRETS.values(), "abc.def-ghi", "xoxb-1-2-three", "tbx_userToken123456"]:
        assert secret not in text
    assert text.count(REDACTED) >= 5


def test_configure_sets_the_level_and_keeps_other_handlers() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        configure(Settings(log_level="debug", log_format="json"), "text")
        configure(Settings(log_level="debug", log_format="json"), "text")  # replaces its own handler
        ours = [h for h in root.handlers if h not in before]
        assert len(ours) == 1 and isinstance(ours[0].formatter, JsonFormatter)
        assert root.level == logging.DEBUG
    finally:
        root.handlers[:] = before
        root.setLevel(level)
