"""Usage accounting without a kernel: a turn's figures, the ledger in a local store, budgets on
an injected clock, prices, and the metrics' totals."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from controller.agent.llm import LlmCall
from controller.events import Done, Error, Event, Message
from controller.identity import ThreadKey
from controller.metrics import Metrics
from controller.stores.base import StoreUnavailable
from controller.stores.local import LocalStore
from controller.threads import ensure_thread
from controller.usage.accounting import Accounting, AccountingConfig
from controller.usage.budget import Budget
from controller.usage.figures import Tokens, TurnRecord, UsageTotals, add_execution
from controller.usage.ledger import user_key, workspace_key
from controller.usage.prices import ModelPrice, estimate

MODEL = "gpt-4o-mini"
NOON = dt.datetime(2026, 12, 2, 12, tzinfo=dt.UTC).timestamp()
PRICES = {MODEL: ModelPrice(input=1.0, cached=0.5, output=2.0)}


class Clock:
    def __init__(self, at: float = NOON) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def accounting(
    store: LocalStore, tokens: int = 0, seconds: float = 0, clock: Clock | None = None
) -> Accounting:
    config = AccountingConfig(
        budget_tokens_per_day=tokens, budget_exec_seconds_per_day=seconds, prices=PRICES
    )
    return Accounting(store, Metrics(), config, clock or Clock())


def slack_thread(store: LocalStore, user: str = "alice", thread: str = "1.0") -> str:
    return ensure_thread(store, ThreadKey("slack", "T1", "C1", thread), "n", user).id


async def agent_turn(
    metrics: Metrics, *calls: tuple[int, int, int], seconds: float = 0.0
) -> AsyncIterator[Event]:
    """What an agent does: LLM calls reporting (prompt, completion, cached), and an execution."""
    for prompt, completion, cached in calls:
        LlmCall(metrics, MODEL).tokens(prompt, completion, cached)
    if seconds:
        add_execution(seconds)
    yield Message(text="answer")
    yield Done(status="ok")


async def collect(events: AsyncIterator[Event]) -> list[Event]:
    return [e async for e in events]


def test_prices_count_cached_tokens_at_their_own_price_and_name_unpriced_models() -> None:
    tokens = Tokens(calls=1, prompt=1_000_000, completion=500_000, cached=400_000)
    assert PRICES[MODEL].cost(tokens) == pytest.approx(0.6 + 0.2 + 1.0)
    assert ModelPrice(input=1.0, output=2.0).cost(tokens) == pytest.approx(1.0 + 1.0)  # cached: as input
    cost, unpriced = estimate(PRICES, {MODEL: tokens, "other": Tokens(prompt=5)})
    assert cost == pytest.approx(1.8) and unpriced == ["other"]


async def test_a_turn_records_the_sum_of_its_calls_in_its_thread_user_and_workspace(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    acc, thread = accounting(store), slack_thread(store)
    events = await collect(
        acc.turn(thread, agent_turn(acc.metrics, (100, 20, 30), (150, 10, 90), seconds=1.5))
    )

    assert [e.type for e in events] == ["message", "done"]
    totals = await acc.of_thread(thread)
    assert (totals.turns, totals.llm_calls, totals.executions) == (1, 2, 1)
    assert (totals.prompt_tokens, totals.completion_tokens, totals.cached_tokens) == (250, 30, 120)
    assert totals.total_tokens == 280 and totals.execution_seconds == 1.5
    assert totals.estimated_cost == pytest.approx((130 * 1.0 + 120 * 0.5 + 30 * 2.0) / 1e6)
    day = acc.days(1)
    for owner in (user_key("alice"), workspace_key("slack", "T1")):
        assert UsageTotals.of(await acc.of_days(owner, day)) == totals
    sample = acc.metrics.registry.get_sample_value
    assert sample("threadbox_llm_tokens_total", {"type": "prompt"}) == totals.prompt_tokens
    assert sample("threadbox_llm_tokens_total", {"type": "cached"}) == totals.cached_tokens
    assert sample("threadbox_llm_estimated_cost_total") == pytest.approx(totals.estimated_cost)


async def test_a_turn_that_used_nothing_writes_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    acc, thread = accounting(store), slack_thread(store)
    await collect(acc.turn(thread, agent_turn(acc.metrics)))
    assert store.list_json(thread, "usage") == {}


async def test_the_token_budget_stops_the_third_turn_until_the_next_utc_day(tmp_path: Path) -> None:
    store, clock = LocalStore(tmp_path), Clock(NOON)
    acc, thread = accounting(store, tokens=500, clock=clock), slack_thread(store)
    for _ in range(2):  # 280 tokens each: the second starts at 280, under 500
        await collect(acc.turn(thread, agent_turn(acc.metrics, (250, 30, 0))))
    started = []

    async def third() -> AsyncIterator[Event]:
        started.append(True)
        async for event in agent_turn(acc.metrics, (250, 30, 0)):
            yield event

    refused = await collect(acc.turn(thread, third()))
    assert started == [] and [e.type for e in refused] == ["error", "done"]
    error, done = refused
    assert isinstance(error, Error) and isinstance(done, Done) and done.status == "error"
    assert (error.kind, error.ename) == ("quota", "BudgetReached")
    assert "daily token budget (560 of 500 tokens used)" in error.evalue
    assert "resets at 00:00 UTC, in 12 h 0 min" in error.evalue
    assert acc.metrics.registry.get_sample_value("threadbox_budget_refusals_total", {"budget": "tokens"}) == 1

    clock.at += 86400  # the next day: the budget is whole again
    assert [e.type for e in await collect(acc.turn(thread, third()))] == ["message", "done"]
    assert started == [True]


async def test_the_execution_budget_counts_seconds_and_says_which_budget(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    acc, thread = accounting(store, tokens=10_000, seconds=2.0), slack_thread(store)
    await collect(acc.turn(thread, agent_turn(acc.metrics, seconds=2.5)))
    [error, _] = await collect(acc.turn(thread, agent_turn(acc.metrics)))
    assert isinstance(error, Error)
    assert "daily code execution budget (2.5 of 2 seconds used)" in error.evalue
    assert "token" not in error.evalue


async def test_a_budget_counts_the_users_other_threads_and_not_other_users(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    acc = accounting(store, tokens=100)
    await collect(acc.turn(slack_thread(store, "alice", "1"), agent_turn(acc.metrics, (90, 10, 0))))
    bob = await collect(acc.turn(slack_thread(store, "bob", "2"), agent_turn(acc.metrics, (1, 1, 0))))
    alice = await collect(acc.turn(slack_thread(store, "alice", "3"), agent_turn(acc.metrics)))
    assert bob[-1] == Done(status="ok") and alice[0].type == "error"


async def test_two_replicas_recording_at_once_lose_no_turn(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    replicas, thread = [accounting(store), accounting(store)], slack_thread(store)
    turns = [r.turn(thread, agent_turn(r.metrics, (1, 1, 0))) for r in replicas for _ in range(5)]
    await asyncio.gather(*(collect(t) for t in turns))
    await replicas[1].settled()  # a replica's reads wait for its own records, not another's
    assert (await replicas[0].of_thread(thread)).turns == 10
    assert len(await replicas[1].of_days(user_key("alice"), replicas[1].days(1))) == 10


async def test_a_record_the_store_refuses_is_counted_and_the_turn_still_ends(tmp_path: Path) -> None:
    class Down(LocalStore):
        down = False  # up while the thread is made (its owner index entry is state too)

        def put_state(self, key: str, value: Any) -> None:
            if self.down:
                raise StoreUnavailable("MinIO is down")
            super().put_state(key, value)

    store = Down(tmp_path)
    acc, thread = accounting(store), slack_thread(store)
    store.down = True
    events = await collect(acc.turn(thread, agent_turn(acc.metrics, (1, 1, 0))))
    assert events[-1] == Done(status="ok")
    await acc.settled()
    assert acc.metrics.registry.get_sample_value("threadbox_usage_record_failures_total") == 1


async def test_a_turn_ends_before_its_usage_is_written_and_a_read_waits_for_it(tmp_path: Path) -> None:
    class Held(LocalStore):
        held = False  # not while the thread is made
        writing, unblocked = threading.Event(), threading.Event()

        def put_json(self, thread_id: str, key: str, value: Any) -> None:
            if self.held:
                self.writing.set()
                assert self.unblocked.wait(10), "the test never let the write go on"
            super().put_json(thread_id, key, value)

    store = Held(tmp_path)
    acc, thread = accounting(store), slack_thread(store)
    store.held = True
    events = await collect(acc.turn(thread, agent_turn(acc.metrics, (1, 1, 0))))
    assert events[-1] == Done(status="ok")  # every event out while the record's write is held
    assert await asyncio.to_thread(store.writing.wait, 10)
    reading = asyncio.create_task(acc.of_thread(thread))
    await asyncio.sleep(0)  # one pass of the loop: the read has started and waits on the record
    assert not reading.done()
    store.unblocked.set()
    assert (await asyncio.wait_for(reading, 10)).turns == 1  # 0 had the read not waited


def test_an_unreadable_record_is_skipped_and_the_others_count(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    acc, thread = accounting(store), slack_thread(store)
    record = TurnRecord(at=NOON, thread=thread, models={MODEL: Tokens(calls=1, prompt=3)})
    acc.ledger.record(record, acc.days(1)[0])
    store.put_json(thread, "usage/broken", {"at": "yesterday"})
    assert UsageTotals.of(acc.ledger.of_thread(thread)).prompt_tokens == 3


def test_usage_as_either_client_reports_it_counts_cached_tokens_when_given() -> None:
    metrics = Metrics()
    call = LlmCall(metrics, MODEL)
    call.usage(SimpleNamespace(prompt_tokens=10, completion_tokens=2, prompt_tokens_details=None))
    details = SimpleNamespace(cached_tokens=4)
    call.usage(SimpleNamespace(prompt_tokens=10, completion_tokens=2, prompt_tokens_details=details))
    sample = metrics.registry.get_sample_value
    assert sample("threadbox_llm_tokens_total", {"type": "prompt"}) == 20
    assert sample("threadbox_llm_tokens_total", {"type": "cached"}) == 4


def test_budget_off_reaches_nothing() -> None:
    spent = UsageTotals(total_tokens=10**9, execution_seconds=10**6)
    assert not Budget().on and Budget().reached(spent) == {}
