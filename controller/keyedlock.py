"""One asyncio lock per key, kept only while a task holds or waits for it.

A dict of locks that is never pruned grows by one lock per thread ever seen; this one
forgets a key as soon as its last user leaves. Waiters of one key are served in arrival
order (asyncio.Lock hands a released lock to the oldest waiter).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class _Entry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # holders and waiters


class KeyedLock:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        entry = self._entries.setdefault(key, _Entry())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if not entry.users:
                del self._entries[key]

    def locked(self, key: str) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.lock.locked()

    def waiting(self, key: str) -> int:
        """Tasks queued for ``key`` behind its holder."""
        entry = self._entries.get(key)
        return 0 if entry is None else entry.users - entry.lock.locked()

    def __len__(self) -> int:
        """Keys in use: what the process holds in memory for them."""
        return len(self._entries)
