"""A token bucket per Slack workspace for ``chat.update``.

Slack counts ``chat.update`` (Tier 3, ~50/min) per method, per workspace, per
app, so every thread of a team shares one budget. The buckets live in this
process: with several replicas each gets the full budget and 429s (retried by
the client) absorb the excess. A shared (store- or Redis-backed) bucket is the
fix when that matters.
"""

from __future__ import annotations

import asyncio
import time

TIER3_PER_SECOND = 50 / 60
BURST = 20


class TokenBucket:
    def __init__(self, rate: float = TIER3_PER_SECOND, burst: int = BURST) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._updated = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def try_take(self) -> bool:
        """Take a token if one is free: for edits that can be skipped and coalesced."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    async def take(self) -> None:
        """Wait for a token: for the final edit of a message, which must happen."""
        while not self.try_take():
            await asyncio.sleep((1 - self._tokens) / self.rate)


class WorkspaceBuckets:
    def __init__(self, rate: float = TIER3_PER_SECOND, burst: int = BURST) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def for_team(self, team: str) -> TokenBucket:
        return self._buckets.setdefault(team, TokenBucket(self.rate, self.burst))
