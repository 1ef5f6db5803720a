"""RecentRecords: the bounded memory of thread records that serves live threads in a storage outage."""

from __future__ import annotations

from controller.threads import RecentRecords, ThreadRecord


def record(thread_id: str, user: str = "carol") -> ThreadRecord:
    return ThreadRecord(
        id=thread_id,
        name=thread_id,
        source="api",
        workspace="api",
        channel="console",
        thread=thread_id,
        user=user,
        created=0.0,
    )


def test_the_least_recently_read_record_goes_first_when_full() -> None:
    recent = RecentRecords(limit=2)
    recent.remember(record("a"))
    recent.remember(record("b"))
    recent.remember(record("a"))  # read again: now the most recent
    recent.remember(record("c"))
    assert [recent.get(t) for t in "abc"] == [record("a"), None, record("c")]


def test_a_newer_read_replaces_the_record() -> None:
    recent = RecentRecords()
    recent.remember(record("a", user="carol"))
    recent.remember(record("a", user="dave"))
    assert recent.get("a") == record("a", user="dave")


def test_a_forgotten_thread_is_gone_and_forgetting_an_unknown_one_is_harmless() -> None:
    recent = RecentRecords()
    recent.remember(record("a"))
    recent.forget("a")
    recent.forget("never-seen")
    assert recent.get("a") is None
