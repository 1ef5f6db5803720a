"""What a turn used (tokens by model, execution seconds), and the sums of many turns.

A turn's figures gather in a context variable, as its ids do (controller/turncontext.py), so
the LLM calls (controller/agent/llm.py; in Open Interpreter's worker thread too, since
``asyncio.to_thread`` copies the context and with it this same object) and the executions
(controller/execution.py) add to the turn they belong to without being handed it.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar

from pydantic import BaseModel, Field


class Tokens(BaseModel):
    """One model's tokens: ``cached`` is the part of ``prompt`` the provider served from its cache."""

    calls: int = Field(default=0, description="LLM calls that reported their usage.")
    prompt: int = 0
    completion: int = 0
    cached: int = 0

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    def add(self, other: Tokens) -> None:
        self.calls += other.calls
        self.prompt += other.prompt
        self.completion += other.completion
        self.cached += other.cached


class TurnUsage(BaseModel):
    """What one turn used so far."""

    models: dict[str, Tokens] = Field(default_factory=dict)
    executions: int = 0
    exec_seconds: float = 0.0

    def llm_call(self, model: str, prompt: int, completion: int, cached: int) -> None:
        self.models.setdefault(model, Tokens()).add(
            Tokens(calls=1, prompt=prompt, completion=completion, cached=cached)
        )

    def execution(self, seconds: float) -> None:
        self.executions += 1
        self.exec_seconds += seconds

    @property
    def empty(self) -> bool:
        return not self.models and not self.executions


class TurnRecord(TurnUsage):
    """One turn's usage as stored: in its thread, and in its user's and workspace's day."""

    at: float
    thread: str
    user: str | None = None
    source: str | None = None
    workspace: str | None = None
    cost: float = Field(default=0.0, description="Estimated from the price table when recorded.")
    unpriced: list[str] = Field(default_factory=list, description="Models the price table had no price for.")


class UsageTotals(BaseModel):
    """The sums of turns' usage."""

    turns: int = Field(default=0, description="Turns that called the model or ran code.")
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = Field(
        default=0, description="The part of prompt_tokens served from the provider's cache."
    )
    total_tokens: int = Field(default=0, description="prompt_tokens + completion_tokens.")
    executions: int = 0
    execution_seconds: float = 0.0
    estimated_cost: float = Field(
        default=0.0, description="From THREADBOX_PRICES (per 1M tokens) as each turn ended, in its currency."
    )
    unpriced_models: list[str] = Field(
        default_factory=list, description="Models whose tokens are not in estimated_cost: no price for them."
    )
    models: dict[str, Tokens] = Field(default_factory=dict, description="Tokens by model.")

    @classmethod
    def of(cls, records: Iterable[TurnRecord]) -> UsageTotals:
        totals = cls()
        for record in records:
            totals.turns += 1
            totals.executions += record.executions
            totals.execution_seconds += record.exec_seconds
            totals.estimated_cost += record.cost
            for model, tokens in record.models.items():
                totals.models.setdefault(model, Tokens()).add(tokens)
            totals.unpriced_models = sorted({*totals.unpriced_models, *record.unpriced})
        every = Tokens()
        for tokens in totals.models.values():
            every.add(tokens)
        totals.llm_calls, totals.prompt_tokens, totals.cached_tokens = every.calls, every.prompt, every.cached
        totals.completion_tokens, totals.total_tokens = every.completion, every.total
        return totals


CURRENT: ContextVar[TurnUsage | None] = ContextVar("threadbox_turn_usage", default=None)


def add_llm_call(model: str, prompt: int, completion: int, cached: int) -> None:
    """Count an LLM call's tokens in the running turn's usage, if it is accounted (not in unit tests)."""
    if (usage := CURRENT.get()) is not None:
        usage.llm_call(model, prompt, completion, cached)


def add_execution(seconds: float) -> None:
    """Count an execution in the running turn's usage, if it is accounted."""
    if (usage := CURRENT.get()) is not None:
        usage.execution(seconds)
