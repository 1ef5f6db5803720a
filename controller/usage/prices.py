"""The price table (THREADBOX_PRICES): a model's tokens to an estimated cost."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from controller.usage.figures import Tokens

PER_TOKENS = 1_000_000


class ModelPrice(BaseModel):
    """One model's prices per 1M tokens, in whatever currency the table is in."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0, description="Per 1M prompt tokens not served from the cache.")
    output: float = Field(ge=0, description="Per 1M completion tokens.")
    cached: float | None = Field(default=None, ge=0, description="Per 1M cached prompt tokens; unset: input.")

    def cost(self, tokens: Tokens) -> float:
        cached = self.input if self.cached is None else self.cached
        fresh = tokens.prompt - tokens.cached
        return (fresh * self.input + tokens.cached * cached + tokens.completion * self.output) / PER_TOKENS


def estimate(prices: Mapping[str, ModelPrice], models: Mapping[str, Tokens]) -> tuple[float, list[str]]:
    """The cost of ``models``' tokens, and the models with tokens but no price (left out of it)."""
    priced = [prices[m].cost(t) for m, t in models.items() if m in prices]
    unpriced = sorted(m for m, t in models.items() if m not in prices and t.total)
    return sum(priced), unpriced
