"""History trimming: whole exchanges, newest first, within budget and age; no base64 stored."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from controller.agent.history import Exchange, History, messages_of, scrub, trim
from controller.stores.local import LocalStore

DAY = 86400.0


def exchange(at: float, text: str, tool: bool = False) -> Exchange:
    messages: list[dict[str, Any]] = [{"role": "user", "content": text}]
    if tool:
        call = {"id": f"c{at}", "type": "function", "function": {"name": "run_python", "arguments": "{}"}}
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"c{at}", "content": "x" * 400})
    messages.append({"role": "assistant", "content": "ok"})
    return Exchange(at, messages)


def test_trim_keeps_newest_exchanges_within_budget() -> None:
    exchanges = [exchange(float(i), "q" * 400, tool=True) for i in range(10)]
    per = exchanges[0].tokens()
    kept = trim(exchanges, budget=per * 3 + 1, ttl_days=0, now=100)
    assert [e.at for e in kept] == [7.0, 8.0, 9.0]


def test_trim_never_splits_a_tool_call_from_its_result() -> None:
    exchanges = [exchange(float(i), "q" * 50, tool=True) for i in range(6)]
    for budget in range(1, 2000, 37):
        messages = messages_of(trim(exchanges, budget, ttl_days=0, now=10))
        calls = {c["id"] for m in messages for c in m.get("tool_calls", [])}
        results = {m["tool_call_id"] for m in messages if m["role"] == "tool"}
        assert calls == results
        assert not messages or messages[0]["role"] == "user"


def test_trim_drops_exchanges_older_than_ttl() -> None:
    now = 100 * DAY
    exchanges = [exchange(now - 40 * DAY, "old"), exchange(now - 10 * DAY, "recent")]
    assert [e.messages[0]["content"] for e in trim(exchanges, 10_000, 30, now)] == ["recent"]
    assert len(trim(exchanges, 10_000, 0, now)) == 2  # 0 keeps everything


def test_trim_drops_an_exchange_bigger_than_the_whole_budget() -> None:
    assert trim([exchange(1.0, "q" * 10_000)], budget=500, ttl_days=0, now=2) == []


def test_scrub_replaces_inline_images() -> None:
    message = {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}],
    }
    assert "base64" not in str(scrub(message))
    assert scrub("see data:image/jpeg;base64,/9j/4AAQ== here") == "see [image] here"


def test_history_round_trips_through_the_store_and_trims(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    history = History(store, "history", budget=500, ttl_days=30)
    thread = "t" * 32
    for i in range(5):
        history.append(thread, exchange(time.time() + i, f"turn {i} " + "w" * 1200))
    loaded = History(store, "history", budget=500, ttl_days=30).load(thread)
    assert loaded and loaded[-1].messages[0]["content"].startswith("turn 4")
    assert sum(e.tokens() for e in loaded) <= 500
    assert [m["content"][:6] for e in loaded for m in e.messages if m["role"] == "user"] == ["turn 4"]


def test_history_ignores_an_unreadable_record(tmp_path: Path) -> None:
    store, thread = LocalStore(tmp_path), "t" * 32
    history = History(store, "history", 500, 30)
    history.append(thread, exchange(time.time(), "kept"))
    store.put_json(thread, "history/0000000001.000000-bad", {"messages": "no time"})
    assert [e.messages[0]["content"] for e in history.load(thread)] == ["kept"]
    store.put_json(thread, "history", {"version": 99})  # an unknown whole-history record
    assert [e.messages[0]["content"] for e in history.load(thread)] == ["kept"]
    assert store.get_json(thread, "history") is None


def test_a_history_written_whole_by_an_older_version_is_split_into_records(tmp_path: Path) -> None:
    store, thread, now = LocalStore(tmp_path), "t" * 32, time.time()
    old = [exchange(now - 2, "first"), exchange(now - 1, "second")]
    store.put_json(
        thread, "history", {"version": 1, "exchanges": [{"at": e.at, "messages": e.messages} for e in old]}
    )
    history = History(store, "history", 5000, 30)
    assert [e.messages[0]["content"] for e in history.load(thread)] == ["first", "second"]
    history.append(thread, exchange(now, "third"))
    assert store.get_json(thread, "history") is None
    assert len(store.list_json(thread, "history")) == 3
    assert [e.messages[0]["content"] for e in history.load(thread)] == ["first", "second", "third"]


def test_concurrent_writers_never_lose_an_exchange(tmp_path: Path) -> None:
    """Two replicas appending to one thread at once (each its own History over one store):
    a load-modify-write of a single record loses exchanges here; one record each loses none."""
    store, thread, now = LocalStore(tmp_path), "t" * 32, time.time()
    writers = [History(store, "history", 10**6, 30) for _ in range(2)]
    barrier = threading.Barrier(2)

    def write(w: int) -> None:
        barrier.wait(timeout=10)
        for i in range(25):
            writers[w].append(thread, exchange(now + i / 100, f"w{w}-{i}"))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    texts = {e.messages[0]["content"] for e in writers[0].load(thread)}
    assert texts == {f"w{w}-{i}" for w in range(2) for i in range(25)}
