"""The usage routes: a thread's totals, and a user's or a workspace's over their last days.

Owners see their own figures and admins everyone's; a thread the caller may not see answers
404 as everywhere, another user's or a workspace's figures 403.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

from controller.apidocs import ThreadRef, errors
from controller.auth import Caller, Principal
from controller.lookup import find_thread
from controller.runtime import Runtime
from controller.usage.budget import next_midnight, utc_day
from controller.usage.figures import UsageTotals
from controller.usage.ledger import user_key, workspace_key

MAX_DAYS = 92


def _name(description: str) -> Any:
    return Query(min_length=1, max_length=200, description=description)


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
    user: str | None = Field(description="Whose turns, for a user's usage.")
    source: str | None = Field(description="The front-end of the workspace, for a workspace's usage.")
    workspace: str | None
    since: dt.date = Field(description="The first UTC day counted.")
    until: dt.date = Field(description="The last UTC day counted: today.")
    totals: UsageTotals
    budget: BudgetOut | None = Field(description="For a user: today's figures against the daily budgets.")


def _owner(who: Principal, user: str | None, workspace: str | None, source: str | None) -> str:
    """The ledger key the caller asks for, after checking they may see it."""
    if workspace is None and source is None:
        if (user or who.user) != who.user and not who.admin:
            raise HTTPException(403, "Only an admin may see another user's usage.")
        return user_key(user or who.user)
    if user is not None or workspace is None or source is None:
        raise HTTPException(
            422, "Ask for a user (?user=) or a workspace with its front-end (?workspace=T1&source=slack)."
        )
    if not who.admin:
        raise HTTPException(403, "Only an admin may see a workspace's usage.")
    return workspace_key(source, workspace)


def add_usage_routes(app: FastAPI, rt: Runtime) -> None:
    accounting = rt.accounting

    @app.get("/threads/{thread_id}/usage", tags=["usage"])
    async def thread_usage(thread_id: ThreadRef, who: Caller) -> ThreadUsageOut:
        """What the thread's turns used: tokens, executions, estimated cost."""
        record = await find_thread(rt, thread_id, who)
        return ThreadUsageOut(thread=record.id, totals=await accounting.of_thread(record.id))

    @app.get("/usage", tags=["usage"], responses=errors(403))
    async def usage(
        who: Caller,
        user: Annotated[str | None, _name("Whose usage; default: the caller's.")] = None,
        workspace: Annotated[str | None, _name("A workspace's usage instead (admins only).")] = None,
        source: Annotated[str | None, _name("The workspace's front-end: slack, api...")] = None,
        days: Annotated[int, Query(ge=1, le=MAX_DAYS, description="UTC days up to today.")] = 1,
    ) -> UsageOut:
        """A user's (or, for admins, a workspace's) usage over the last ``days`` UTC days."""
        owner = _owner(who, user, workspace, source)
        counted = accounting.days(days)
        records = await accounting.of_days(owner, counted)
        budget = None
        if workspace is None:
            today = UsageTotals.of(r for r in records if utc_day(r.at) == counted[-1])
            limits = accounting.budget
            budget = BudgetOut(
                tokens_per_day=limits.tokens_per_day,
                exec_seconds_per_day=limits.exec_seconds_per_day,
                tokens_today=today.total_tokens,
                exec_seconds_today=today.execution_seconds,
                resets_at=next_midnight(accounting.clock()),
            )
        return UsageOut(
            user=(user or who.user) if workspace is None else None,
            source=source,
            workspace=workspace,
            since=counted[0],
            until=counted[-1],
            totals=UsageTotals.of(records),
            budget=budget,
        )
