"""The ThreadStore interface: where a thread's files and history outlive its sandbox.

Blocking by design: the MinIO SDK is blocking, and the same code runs inside
sandbox pods. Async callers wrap calls in ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol


class StoreError(Exception):
    """Base of store failures."""


class StoreUnavailable(StoreError):
    """The backing service cannot be reached; nothing was written."""


class NotInStore(StoreError, KeyError):
    """The thread or file does not exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


# State keys are paths of lowercase slugs ("tokens/<sha256>"), so they are safe as file
# and object names in both stores and can never climb out of the state area.
STATE_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}(/[a-z0-9][a-z0-9_-]{0,127}){0,3}$")


def check_state_key(key: str) -> str:
    if not STATE_KEY.match(key):
        raise ValueError(f"bad state key {key!r}")
    return key


def names_after(names: Iterable[str], after: str | None, limit: int | None) -> list[str]:
    """The first ``limit`` (or all) of ``names``, in their order, that sort after ``after``."""
    return list(itertools.islice((n for n in names if after is None or n > after), limit))


def claim_name(key: str) -> str:
    """Claims are keyed by any string; hashing makes it a safe file or object name."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class StoredFile:
    name: str
    size: int
    sha256: str
    modified: float

    def expired(self, ttl_days: float, now: float | None = None) -> bool:
        return ttl_days > 0 and (now or time.time()) - self.modified > ttl_days * 86400


class ThreadStore(Protocol):
    def check(self) -> None:
        """Raise StoreUnavailable unless the store can serve requests."""

    def list_threads(self) -> list[str]: ...

    def page_threads(self, after: str | None, limit: int) -> list[str]:
        """Up to ``limit`` thread ids after ``after``, in order: one listing call however many
        threads there are (limit <= 1000)."""
        ...

    def get_json(self, thread_id: str, key: str) -> Any | None: ...

    def put_json(self, thread_id: str, key: str, value: Any) -> None: ...

    def list_json(self, thread_id: str, folder: str) -> dict[str, Any]:
        """Every ``folder/<name>`` value of the thread, by name, in name order. Writers that
        must not lose each other's records (two replicas) each write their own name."""
        ...

    def delete_json(self, thread_id: str, key: str) -> None:
        """Remove one value; gone already is fine."""

    def list_files(self, thread_id: str) -> list[StoredFile]: ...

    def put_file(self, thread_id: str, name: str, source: Path, sha256: str) -> StoredFile: ...

    def download_file(self, thread_id: str, name: str, out: BinaryIO) -> None:
        """Write the file's bytes to ``out``; NotInStore before writing anything if it is gone.

        The caller owns where the bytes land (a workspace is written only through
        ``controller/nofollow.py``)."""
        ...

    def read_file(self, thread_id: str, name: str) -> bytes: ...

    def delete_file(self, thread_id: str, name: str) -> None: ...

    def delete_thread(self, thread_id: str) -> None: ...

    # Opaque bytes of the thread that are not its files (its kernel's saved variables): under
    # the thread's prefix, so a sandbox's scoped credentials reach its own and no other's.
    # ``key`` is a state key (check_state_key).
    def put_blob(self, thread_id: str, key: str, source: Path) -> int:
        """Store ``source``'s bytes; returns their size."""
        ...

    def download_blob(self, thread_id: str, key: str, out: BinaryIO) -> None:
        """Write the bytes to ``out``; NotInStore before writing anything if there are none."""

    def delete_blob(self, thread_id: str, key: str) -> None:
        """Gone already is fine."""

    def blob_size(self, thread_id: str, key: str) -> int | None:
        """The stored size of the bytes, or None when there are none (quotas count it)."""

    # Copies inside the store (MinIO: server-side), for a fork: the bytes never pass through
    # the caller, and nothing is ever read as anything but bytes.
    def copy_file(self, thread_id: str, name: str, to_thread: str) -> StoredFile:
        """Copy a stored file, with its sha256, to the same name in ``to_thread``; NotInStore
        if it is gone."""
        ...

    def copy_blob(self, thread_id: str, key: str, to_thread: str) -> int:
        """Copy the bytes under ``key`` to ``to_thread``; their size; NotInStore if there are none."""
        ...

    def claim(self, key: str) -> bool:
        """Atomically create marker ``key``; True for the one caller that created it.

        Shared by every replica (it lives in the store, not in memory): used to
        de-duplicate chat events that are delivered more than once.
        """
        ...

    def release(self, key: str) -> None:
        """Drop a claim, so a later delivery of the same event is processed."""
        ...

    # Non-thread state (API tokens, ...): JSON values under slash-separated keys, kept
    # apart from threads so list_threads never sees them and sandbox credentials,
    # scoped to one thread's prefix, never reach them.
    def get_state(self, key: str) -> Any | None: ...

    def put_state(self, key: str, value: Any) -> None: ...

    def delete_state(self, key: str) -> None: ...

    def list_state(self, prefix: str) -> dict[str, Any]:
        """Every key under ``prefix/`` with its value."""
        ...

    def page_state(self, prefix: str, after: str | None, limit: int) -> list[str]:
        """Up to ``limit`` names of the values directly under ``prefix/``, after ``after``, in
        order, without their values: one listing call (limit <= 1000)."""
        ...
