"""Finding the threads a caller may see: one by its id or its name, or a page of them.

Thread records never change once written, so a record this replica has read stands in for
another read; the store's listing stays the truth for which threads exist. A page costs one
listing and a read per thread on it that this replica has not read, however many threads there
are (more only for listed threads that are gone): an admin's page lists thread ids, a user's
their entries in the owner index (controller/threads.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import HTTPException

from controller.auth import Principal
from controller.identity import ThreadKey, is_thread_id
from controller.owners import owner_folder
from controller.runtime import Runtime
from controller.stores.base import StoreUnavailable, ThreadStore
from controller.threads import ThreadRecord, get_thread


def visible(record: ThreadRecord, who: Principal) -> bool:
    """Admins see every thread; a user only the API threads they own (never chat threads)."""
    return who.admin or (record.source == "api" and record.user == who.user)


async def read_thread(rt: Runtime, thread_id: str) -> ThreadRecord | None:
    """The thread's record from the store; while the store is down, the one this replica read
    last, and only for a thread whose sandbox is live here."""
    try:
        record = await asyncio.to_thread(get_thread, rt.store, thread_id)
    except StoreUnavailable:
        recent = rt.recent_threads.get(thread_id)
        if recent is None or not rt.manager.is_live(thread_id):
            raise
        return recent
    if record is None:
        rt.recent_threads.forget(thread_id)  # deleted, maybe by another replica
    else:
        rt.recent_threads.remember(record)
    return record


def api_thread_id(name: str, owner: str) -> str:
    """The id of ``owner``'s API thread called ``name`` (POST /threads makes it so)."""
    return ThreadKey("api", owner, "console", name).id


async def find_thread(rt: Runtime, ref: str, who: Principal) -> ThreadRecord:
    """The thread ``ref`` names, by id or by the name of one of the caller's threads; 404 when
    none the caller may see, 409 when it is the id of one and the name of another."""
    by_id = await read_thread(rt, ref) if is_thread_id(ref) else None
    try:
        by_name = await read_thread(rt, api_thread_id(ref, who.user))
    except StoreUnavailable:
        if by_id is None:
            raise
        by_name = None  # while storage is down, a string shaped like an id is taken as one
    # Someone else's thread answers exactly like a missing one, so ids cannot be probed.
    found = [r for r in (by_id, by_name) if r is not None and visible(r, who)]
    if len(found) > 1:
        raise HTTPException(
            409, f"{ref!r} is the id of one thread and the name of another of yours; use the id."
        )
    if not found:
        raise HTTPException(404, f"No thread {ref!r}. Create it with POST /threads first.")
    return found[0]


@dataclass(frozen=True)
class Page:
    threads: list[ThreadRecord]
    after: str | None  # the cursor of the next page; None on the last


async def list_page(rt: Runtime, who: Principal, after: str | None, limit: int) -> Page:
    """Up to ``limit`` threads the caller sees, in id order, after the id ``after``."""
    found: list[ThreadRecord] = []
    while True:
        want = limit - len(found)
        # One id more than the page holds says whether another page follows.
        ids = await asyncio.to_thread(_ids_after, rt.store, who, after, want + 1)
        batch = ids[:want]
        records = await asyncio.gather(*(_cached(rt, tid) for tid in batch))
        # A record can be gone since the listing (deleted), or in the middle of its creation.
        found += [r for r in records if r is not None and visible(r, who)]
        if len(ids) <= want:
            return Page(found, None)
        after = batch[-1]
        if len(found) == limit:
            return Page(found, after)


def _ids_after(store: ThreadStore, who: Principal, after: str | None, limit: int) -> list[str]:
    if who.admin:
        return store.page_threads(after, limit)
    return store.page_state(owner_folder(who.user), after, limit)


async def _cached(rt: Runtime, thread_id: str) -> ThreadRecord | None:
    return rt.recent_threads.get(thread_id) or await read_thread(rt, thread_id)
