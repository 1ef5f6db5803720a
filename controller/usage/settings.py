"""The usage accounting settings (README "Usage accounting"); ``Settings`` inherits them."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from controller.usage.prices import ModelPrice


class UsageSettings(BaseSettings):
    """Daily budgets per user (0: none) and the price table of estimated costs."""

    budget_tokens_per_day: int = Field(default=0, ge=0, description="LLM tokens per user per UTC day.")
    budget_exec_seconds_per_day: float = Field(
        default=0, ge=0, description="Seconds of code execution per user per UTC day."
    )
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description='JSON: per model, per 1M tokens, {"input": …, "cached": …, "output": …}.',
    )
