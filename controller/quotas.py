"""Per-thread and per-user file quotas. A limit of 0 means unlimited."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from controller.owners import owned_threads
from controller.stores.base import StoredFile, ThreadStore

# The blob a thread's kernel saves its variables to (controller/kernelstate.py): stored beside
# the files, so its bytes count against the same byte limits (not as a file).
SNAPSHOT = "kernel-state"


class QuotaExceeded(Exception):
    """A write would break a quota; the message is meant for the end user."""


@dataclass(frozen=True)
class Usage:
    files: int = 0
    bytes: int = 0

    @classmethod
    def of(cls, files: Iterable[StoredFile]) -> Usage:
        items = list(files)
        return cls(len(items), sum(f.size for f in items))

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.files + other.files, self.bytes + other.bytes)

    def replace(self, old_size: int | None, new_size: int) -> Usage:
        if old_size is None:
            return Usage(self.files + 1, self.bytes + new_size)
        return Usage(self.files, self.bytes - old_size + new_size)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


@dataclass(frozen=True)
class Quotas:
    max_file_bytes: int = 0
    thread_max_files: int = 0
    thread_max_bytes: int = 0
    user_max_files: int = 0
    user_max_bytes: int = 0

    def check_file(self, name: str, size: int) -> None:
        if self.max_file_bytes and size > self.max_file_bytes:
            raise QuotaExceeded(
                f"{name} is {_mib(size)}, over the {_mib(self.max_file_bytes)} limit for one file"
            )

    def check_thread(self, name: str, after: Usage) -> None:
        if self.thread_max_files and after.files > self.thread_max_files:
            raise QuotaExceeded(f"{name}: this thread already has its limit of {self.thread_max_files} files")
        if self.thread_max_bytes and after.bytes > self.thread_max_bytes:
            raise QuotaExceeded(
                f"{name}: this thread's files would total {_mib(after.bytes)}, "
                f"over its {_mib(self.thread_max_bytes)} limit"
            )

    def check_user(self, name: str, after: Usage) -> None:
        if self.user_max_files and after.files > self.user_max_files:
            raise QuotaExceeded(f"{name}: you already have your limit of {self.user_max_files} files")
        if self.user_max_bytes and after.bytes > self.user_max_bytes:
            raise QuotaExceeded(
                f"{name}: your files would total {_mib(after.bytes)}, "
                f"over your {_mib(self.user_max_bytes)} limit"
            )

    def check_write(self, name: str, size: int, thread_after: Usage, others: Usage | None) -> None:
        """Every limit for writing ``name``: ``thread_after`` is the thread's usage with it,
        ``others`` what the user holds in other threads (None: no per-user check)."""
        self.check_file(name, size)
        self.check_thread(name, thread_after)
        if others is not None:
            self.check_user(name, others + thread_after)

    @property
    def per_user(self) -> bool:
        return bool(self.user_max_files or self.user_max_bytes)


@dataclass(frozen=True)
class UserQuota:
    """The per-user limits, sent to a pod with each persist: its credentials cannot list the
    user's other threads, so the controller counts those (``others``) when the pod asks."""

    max_files: int = 0
    max_bytes: int = 0
    others: Usage | None = None  # None: not counted yet

    def applied_to(self, quotas: Quotas) -> Quotas:
        return replace(quotas, user_max_files=self.max_files, user_max_bytes=self.max_bytes)

    @classmethod
    def from_json(cls, raw: object) -> UserQuota:
        """The ``user_quota`` of a /persist request; ValueError names what is wrong with it."""
        if not isinstance(raw, Mapping):
            raise ValueError("user_quota must be an object")
        others = raw.get("others")
        if others is not None and not isinstance(others, Mapping):
            raise ValueError("user_quota.others must be an object")
        counted = None if others is None else Usage(_count(others, "files"), _count(others, "bytes"))
        return cls(_count(raw, "max_files"), _count(raw, "max_bytes"), counted)


def _count(raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key, 0)
    if type(value) is not int or value < 0:
        raise ValueError(f"{key} must be a whole number of at least 0, not {value!r}")
    return value


def snapshot_usage(store: ThreadStore, thread_id: str) -> Usage:
    """The bytes of the thread's saved kernel state (no file)."""
    return Usage(0, store.blob_size(thread_id, SNAPSHOT) or 0)


def stored_usage(store: ThreadStore, thread_id: str) -> Usage:
    """What a thread holds: its files, and the bytes of its saved kernel state."""
    return Usage.of(store.list_files(thread_id)) + snapshot_usage(store, thread_id)


def user_usage(store: ThreadStore, user: str, exclude: str) -> Usage:
    """What ``user`` holds in threads other than ``exclude`` (that one is counted live): their
    threads from the owner index, so the cost grows with the user's threads, not everyone's."""
    total = Usage()
    for tid in owned_threads(store, user):
        if tid != exclude:
            total += stored_usage(store, tid)
    return total


def check_upload(
    store: ThreadStore, quotas: Quotas, thread_id: str, user: str | None, name: str, size: int
) -> None:
    """Raise QuotaExceeded if storing ``size`` bytes as ``name`` in the thread would break a limit."""
    stored = {f.name: f for f in store.list_files(thread_id)}
    held = Usage.of(stored.values()) + snapshot_usage(store, thread_id)
    after = held.replace(stored[name].size if name in stored else None, size)
    others = user_usage(store, user, thread_id) if user and quotas.per_user else None
    quotas.check_write(name, size, after, others)
