"""Usage accounting end to end: HTTP API -> built-in agent -> real openai SDK -> fake LLM
reporting usage, real kernels; the figures through the API, the store and /metrics agree."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.auth import create_token
from controller.usage.figures import Tokens, TurnRecord
from controller.usage.ledger import Ledger, user_key, workspace_key
from devkit.client import bearer
from tests.support.agent import chat, done, messages
from tests.support.client import create_thread, errors, run
from tests.support.fake_openai import FakeOpenAI, Text, Usage, fake_llm, run_python

pytestmark = pytest.mark.integration

MODEL = "gpt-4o-mini"
PRICES = {MODEL: {"input": 0.15, "cached": 0.075, "output": 0.6}}
NOON = dt.datetime(2026, 12, 2, 12, tzinfo=dt.UTC).timestamp()


class Clock:
    def __init__(self) -> None:
        self.at = NOON

    def __call__(self) -> float:
        return self.at


def llm_client(api: Any, fake: FakeOpenAI, **more: Any) -> httpx.Client:
    settings = {"agent": "builtin", "llm_base_url": fake.base_url, "llm_api_key": "test", "prices": PRICES}
    return api(**settings, **more)  # type: ignore[no-any-return]


def metric_totals(client: httpx.Client) -> dict[str, float]:
    """The usage totals /metrics shows (one replica, started for this test)."""
    samples = {
        (s.name, s.labels.get("type")): s.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for s in family.samples
    }
    return {
        "prompt_tokens": samples[("threadbox_llm_tokens_total", "prompt")],
        "completion_tokens": samples[("threadbox_llm_tokens_total", "completion")],
        "cached_tokens": samples[("threadbox_llm_tokens_total", "cached")],
        "execution_seconds": samples[("threadbox_execution_seconds_sum", None)],
        "estimated_cost": samples[("threadbox_llm_estimated_cost_total", None)],
    }


def test_two_llm_calls_are_recorded_as_reported_and_a_budget_stops_the_third_turn_until_tomorrow(
    api: Any,
) -> None:
    with fake_llm() as fake:
        client = llm_client(api, fake, budget_tokens_per_day=500)
        clock = client.runtime.accounting.clock = Clock()  # type: ignore[attr-defined]
        thread = create_thread(client, "usage")
        fake.add(
            run_python("print(6 * 7)", usage=Usage(prompt=100, completion=20, cached=30)),
            Text("It is 42.", when="42", usage=Usage(prompt=150, completion=10, cached=90)),
        )
        assert done(chat(client, thread, "What is 6 times 7?"))["status"] == "ok"
        reported = list(fake.reported)
        # Read through the API first: it waits for the record being written after the answer.
        totals = client.get(f"/threads/{thread}/usage").json()["totals"]
        [stored] = client.runtime.store.list_json(thread, "usage").values()  # type: ignore[attr-defined]

        fake.add(Text("Again.", usage=Usage(prompt=250, completion=30)))  # 560 tokens today: over 500
        chat(client, thread, "Once more")
        asked = len(fake.requests)
        refused = chat(client, thread, "And a third time")
        asked_after = len(fake.requests)
        today = client.get("/usage").json()

        clock.at += 86400  # the next UTC day: the budget is whole again
        fake.add(Text("A new day."))
        next_day = chat(client, thread, "And a third time")

    assert len(reported) == 2
    assert totals["llm_calls"] == 2 and totals["executions"] == 1
    assert totals["prompt_tokens"] == sum(u.prompt for u in reported) == 250
    assert totals["completion_tokens"] == sum(u.completion for u in reported) == 30
    assert totals["cached_tokens"] == sum(u.cached for u in reported) == 120
    assert totals["models"][MODEL]["calls"] == 2
    assert stored["models"][MODEL] == {
        "calls": 2,
        "prompt": 250,
        "completion": 30,
        "cached": 120,
    }  # one record
    assert totals["estimated_cost"] == pytest.approx((130 * 0.15 + 120 * 0.075 + 30 * 0.6) / 1e6)

    [error] = errors(refused)
    assert asked_after == asked  # the refused turn never reached the model
    assert (error["kind"], error["ename"]) == ("quota", "BudgetReached")
    assert "daily token budget (560 of 500 tokens used)" in error["evalue"]
    assert "resets at 00:00 UTC, in 12 h 0 min" in error["evalue"]
    assert today["budget"]["tokens_today"] == today["totals"]["total_tokens"] == 560
    assert today["budget"]["resets_at"] == NOON + 12 * 3600
    assert messages(next_day) == ["A new day."] and done(next_day)["status"] == "ok"

    both = client.get("/usage", params={"days": 2}).json()
    assert (both["since"], both["until"]) == ("2026-12-02", "2026-12-03")
    assert both["totals"]["total_tokens"] == 562 and both["budget"]["tokens_today"] == 2
    # One replica since it started: /metrics holds what the API sums, with no user in a label.
    final = client.get(f"/threads/{thread}/usage").json()["totals"]
    for name, value in metric_totals(client).items():
        assert value == pytest.approx(final[name]), name


def test_an_owner_and_admins_see_usage_and_nobody_else(api: Any) -> None:
    admin = api()
    thread = create_thread(admin, "mine")
    assert done(run(admin, thread, "print(1)"))["status"] == "ok"  # /execute turns count too
    token, _ = create_token(admin.runtime.store, "bob")
    bob = httpx.Client(base_url=str(admin.base_url), headers=bearer(token))

    mine = admin.get(f"/threads/{thread}/usage").json()["totals"]
    assert mine["executions"] == 1 and mine["execution_seconds"] > 0 and mine["total_tokens"] == 0
    workspace = admin.get("/usage/workspaces/api/admin").json()  # an API thread's workspace: its owner
    assert workspace["totals"]["executions"] == 1 and "budget" not in workspace
    assert admin.get("/usage", params={"user": "bob"}).json()["totals"]["turns"] == 0

    assert bob.get(f"/threads/{thread}/usage").status_code == 404
    assert bob.get("/usage", params={"user": "admin"}).status_code == 403
    assert bob.get("/usage/workspaces/api/admin").status_code == 403
    assert bob.get("/usage").json()["user"] == "bob"
    assert admin.get("/usage", params={"days": 93}).status_code == 422
    bob.close()
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
    paths = admin.get("/openapi.json").json()["paths"]
    for path in ("/usage", "/usage/workspaces/{source}/{workspace}", "/threads/{thread_id}/usage"):
        answers = paths[path]["get"]["responses"]
        assert {"401", "422", "503"} <= set(answers) and answers["401"]["content"] == error, path
    assert {"403"} <= set(paths["/usage"]["get"]["responses"])
    assert "404" in paths["/threads/{thread_id}/usage"]["get"]["responses"]


def test_the_ledger_in_minio_keeps_every_replicas_turns_by_day(minio: Any) -> None:
    store, thread, day = minio.store(), "api-abcdefghijklmnop", dt.date(2026, 12, 2)
    replicas = [Ledger(store), Ledger(store)]
    turn = TurnRecord(
        at=NOON,
        thread=thread,
        user="alice",
        source="api",
        workspace="alice",
        models={MODEL: Tokens(prompt=5)},
    )
    for ledger in replicas * 2:  # the same moment: each record still has a name of its own
        ledger.record(turn, day)
    assert replicas[0].of_thread(thread) == [turn] * 4
    for owner in (user_key("alice"), workspace_key("api", "alice")):
        assert len(replicas[1].of_days(owner, [day])) == 4
        assert replicas[1].of_days(owner, [day + dt.timedelta(days=1)]) == []
