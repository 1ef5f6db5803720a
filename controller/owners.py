"""The owner index: state ``owners/<sha256 of the user>/<thread id>``, one empty value per thread
that has a user (of any source), so a user's page of threads and the usage their quota counts
are a listing of their own ids, not a read of everyone's. controller/threads.py writes and
removes the entries with the records; the sandbox image ships this module for its quota count.
"""

from __future__ import annotations

import hashlib

from controller.stores.base import ThreadStore

OWNERS = "owners"
# Set once every thread stored before the index covered it has its entry. (``owners-indexed``
# marked the first index, of API threads only: chat threads got entries later.)
OWNERS_INDEXED = "owners-indexed-all"
PAGE = 1000


def owner_folder(user: str) -> str:
    """The state folder of ``user``'s index entries (hashed: a user name is no safe key)."""
    return f"{OWNERS}/{hashlib.sha256(user.encode()).hexdigest()}"


def owned_threads(store: ThreadStore, user: str) -> list[str]:
    """The ids of every thread ``user`` owns, from the index (a record may be mid-creation or
    mid-deletion: callers read it, or count what the store holds)."""
    ids: list[str] = []
    while batch := store.page_state(owner_folder(user), ids[-1] if ids else None, PAGE):
        ids += batch
        if len(batch) < PAGE:
            break
    return ids
