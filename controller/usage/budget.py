"""Daily budgets per user (tokens, execution seconds), on the UTC day, and the sentence a user
gets when one is used up."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from controller.usage.figures import UsageTotals

DAY = 86400


def utc_day(at: float) -> dt.date:
    return dt.datetime.fromtimestamp(at, dt.UTC).date()


def next_midnight(at: float) -> float:
    """When the UTC day of ``at`` ends: budgets reset then."""
    return (at // DAY + 1) * DAY


def _in_words(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


@dataclass(frozen=True)
class Budget:
    """0 means no budget of that kind."""

    tokens_per_day: int = 0
    exec_seconds_per_day: float = 0.0

    @property
    def on(self) -> bool:
        return bool(self.tokens_per_day or self.exec_seconds_per_day)

    def reached(self, today: UsageTotals) -> dict[str, str]:
        """The budgets ``today``'s usage has used up, by kind (``tokens``, ``exec_seconds``), in words."""
        reached = {}
        if self.tokens_per_day and today.total_tokens >= self.tokens_per_day:
            reached["tokens"] = (
                f"your daily token budget ({today.total_tokens:,} of {self.tokens_per_day:,} tokens used)"
            )
        if self.exec_seconds_per_day and today.execution_seconds >= self.exec_seconds_per_day:
            reached["exec_seconds"] = (
                f"your daily code execution budget ({today.execution_seconds:,.1f} of "
                f"{self.exec_seconds_per_day:,g} seconds used)"
            )
        return reached

    @staticmethod
    def refusal(reached: dict[str, str], now: float) -> str:
        """What the user reads instead of an answer."""
        return (
            f"This message was not run: you have reached {' and '.join(reached.values())} today (UTC). "
            f"It resets at 00:00 UTC, in {_in_words(next_midnight(now) - now)}."
        )
