"""Every turn's usage accounting: its user's daily budgets are checked before it starts, and
what it used is recorded once it has ended, in the background: the end of a turn's events
waits for no store write (two of them, about 8 ms against MinIO, were most of a Kubernetes
`print(1)` turn's overhead over a direct kernel client).

The invariant kept: a budget check and a usage read on this replica see every turn that
ended on it before they began, because they wait for its records still being written.
SandboxManager.turn wraps each turn's events here while it holds the thread's turn, so a turn
queued behind another is checked with the earlier one's usage. Budgets are soft: a turn that
starts under budget runs to its end. Shutdown waits for the records still being written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from controller.config import Settings, subset
from controller.events import Done, Error, Event
from controller.metrics import Metrics
from controller.stores.base import StoreError, ThreadStore
from controller.tasks import TaskSet
from controller.threads import ThreadRecord, get_thread
from controller.usage.budget import Budget, utc_day
from controller.usage.figures import CURRENT, TurnRecord, TurnUsage, UsageTotals
from controller.usage.ledger import Ledger, user_key
from controller.usage.prices import ModelPrice, estimate

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class AccountingConfig:
    budget_tokens_per_day: int
    budget_exec_seconds_per_day: float
    prices: dict[str, ModelPrice]

    @classmethod
    def from_settings(cls, settings: Settings) -> AccountingConfig:
        return subset(cls, settings)


class Accounting:
    def __init__(
        self, store: ThreadStore, metrics: Metrics, config: AccountingConfig, clock: Clock = time.time
    ) -> None:
        self.store = store
        self.ledger = Ledger(store)
        self.metrics = metrics
        self.budget = Budget(config.budget_tokens_per_day, config.budget_exec_seconds_per_day)
        self.prices = config.prices
        self.clock = clock  # budgets' days follow it: tests move it to the next day
        self._recording = TaskSet("usage records")

    async def turn(self, thread_id: str, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        """``events`` as one accounted turn; refused with an Error (kind ``quota``) and not
        started when its user's budget for the day is used up."""
        owner = await self._owner(thread_id) if self.budget.on else None
        refusal = await self._refusal(owner)
        if refusal is not None:
            yield Error(kind="quota", ename="BudgetReached", evalue=refusal)
            yield Done(status="error")
            return
        usage = TurnUsage()
        CURRENT.set(usage)  # set, not reset with a token: as turncontext's ids, for the same reason
        try:
            async for event in events:
                yield event
        finally:
            CURRENT.set(None)
            if not usage.empty:
                self._recording.spawn(self._record(thread_id, owner, usage, self.clock()))

    async def settled(self) -> None:
        """Every turn that has ended here is recorded (or its failure counted)."""
        await self._recording.drain()

    def days(self, count: int) -> list[dt.date]:
        """The last ``count`` UTC days by the clock, today last."""
        today = utc_day(self.clock())
        return [today - dt.timedelta(days=n) for n in range(count - 1, -1, -1)]

    async def of_days(self, owner: str, days: list[dt.date]) -> list[TurnRecord]:
        await self.settled()
        return await asyncio.to_thread(self.ledger.of_days, owner, days)

    async def of_thread(self, thread_id: str) -> UsageTotals:
        await self.settled()
        return UsageTotals.of(await asyncio.to_thread(self.ledger.of_thread, thread_id))

    async def _owner(self, thread_id: str) -> ThreadRecord | None:
        try:
            return await asyncio.to_thread(get_thread, self.store, thread_id)
        except StoreError as exc:  # the turn goes on: it says itself what storage does to it
            log.warning("the thread's record could not be read for usage accounting: %s", exc)
            return None

    async def _refusal(self, owner: ThreadRecord | None) -> str | None:
        if owner is None or owner.user is None:
            return None
        now = self.clock()
        try:
            today = UsageTotals.of(await self.of_days(user_key(owner.user), [utc_day(now)]))
        except StoreError as exc:
            log.warning("the daily budget was not checked, the turn runs: %s", exc)
            return None
        reached = self.budget.reached(today)
        for kind in reached:
            self.metrics.budget_refusals.labels(kind).inc()
        return self.budget.refusal(reached, now) if reached else None

    async def _record(self, thread_id: str, owner: ThreadRecord | None, usage: TurnUsage, now: float) -> None:
        owner = owner or await self._owner(thread_id)
        cost, unpriced = estimate(self.prices, usage.models)
        self.metrics.llm_cost.inc(cost)
        record = TurnRecord(
            **usage.model_dump(),
            at=now,
            thread=thread_id,
            user=owner.user if owner else None,
            source=owner.source if owner else None,
            workspace=owner.workspace if owner else None,
            cost=cost,
            unpriced=unpriced,
        )
        try:
            await asyncio.to_thread(self.ledger.record, record, utc_day(now))
        except StoreError as exc:  # the turn has answered; a lost record must not fail it
            self.metrics.usage_record_failures.inc()
            log.warning("the usage of a turn of thread %s was not recorded: %s", thread_id, exc)
        except Exception:
            self.metrics.usage_record_failures.inc()
            log.exception("the usage of a turn was not recorded")
