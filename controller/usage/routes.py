"""The usage routes: a thread's totals, a user's over their last UTC days with today's budgets,
and (admins) a workspace's.

Owners see their own figures and admins everyone's; a thread the caller may not see answers
404 as everywhere, another user's or a workspace's figures 403.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query
from fastapi import Path as FastApiPath
from pydantic import BaseModel, Field

from controller.apidocs import ThreadRef, errors
from controller.auth import Caller
from controller.lookup import find_thread
from controller.runtime import Runtime
from controller.usage.accounting import Accounting
from controller.usage.budget import next_midnight, utc_day
from controller.usage.figures import TurnRecord, UsageTotals
from controller.usage.ledger import user_key, workspace_key

MAX_DAYS = 92
Days = Annotated[int, Query(ge=1, le=MAX_DAYS, description="UTC days counted, up to today.")]
Name = Annotated[str, FastApiPath(min_length=1, max_length=200)]


class ThreadUsageOut(BaseModel):
    thread: str = Field(description="The thread's id.")
    totals: UsageTotals = Field(description="Every turn of the thread since it was made.")


class BudgetOut(BaseModel):
    """The user's daily budgets (0: none) and what today, a UTC day, has used of them."""

    tokens_per_day: int
    exec_seconds_per_day: float
    tokens_today: int
    exec_seconds_today: float
    resets_at: float = Field(
        description="When today ends and the budgets start again (Unix time, 00:00 UTC)."
    )


class UsageOut(BaseModel):
    since: dt.date = Field(description="The first UTC day counted.")
    until: dt.date = Field(description="The last UTC day counted: today.")
    totals: UsageTotals


class UserUsageOut(UsageOut):
    user: str
    budget: BudgetOut = Field(description="Today's figures against the daily budgets.")


class WorkspaceUsageOut(UsageOut):
    source: str = Field(description="The workspace's front-end: slack, api...")
    workspace: str


def _budget(accounting: Accounting, records: list[TurnRecord], today: dt.date) -> BudgetOut:
    spent = UsageTotals.of(r for r in records if utc_day(r.at) == today)
    return BudgetOut(
        tokens_per_day=accounting.budget.tokens_per_day,
        exec_seconds_per_day=accounting.budget.exec_seconds_per_day,
        tokens_today=spent.total_tokens,
        exec_seconds_today=spent.execution_seconds,
        resets_at=next_midnight(accounting.clock()),
    )


def add_usage_routes(app: FastAPI, rt: Runtime) -> None:
    accounting = rt.accounting

    @app.get("/threads/{thread_id}/usage", tags=["usage"])
    async def thread_usage(thread_id: ThreadRef, who: Caller) -> ThreadUsageOut:
        """What the thread's turns used: tokens, executions, estimated cost."""
        record = await find_thread(rt, thread_id, who)
        return ThreadUsageOut(thread=record.id, totals=await accounting.of_thread(record.id))

    @app.get("/usage", tags=["usage"], responses=errors(403))
    async def user_usage(
        who: Caller,
        user: Annotated[
            str | None, Query(min_length=1, max_length=200, description="Whose; default: the caller.")
        ] = None,
        days: Days = 1,
    ) -> UserUsageOut:
        """A user's usage over their last ``days`` UTC days, across their threads, and today's budgets."""
        user = user or who.user
        if user != who.user and not who.admin:
            raise HTTPException(403, "Only an admin may see another user's usage.")
        counted = accounting.days(days)
        records = await accounting.of_days(user_key(user), counted)
        return UserUsageOut(
            user=user,
            since=counted[0],
            until=counted[-1],
            totals=UsageTotals.of(records),
            budget=_budget(accounting, records, counted[-1]),
        )

    @app.get("/usage/workspaces/{source}/{workspace}", tags=["usage"], responses=errors(403))
    async def workspace_usage(
        source: Name, workspace: Name, who: Caller, days: Days = 1
    ) -> WorkspaceUsageOut:
        """A workspace's usage (a Slack team; an API thread's workspace is its owner), for admins."""
        if not who.admin:
            raise HTTPException(403, "Only an admin may see a workspace's usage.")
        counted = accounting.days(days)
        records = await accounting.of_days(workspace_key(source, workspace), counted)
        return WorkspaceUsageOut(
            source=source,
            workspace=workspace,
            since=counted[0],
            until=counted[-1],
            totals=UsageTotals.of(records),
        )
