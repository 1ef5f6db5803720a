"""Files a turn's code changed, read back from the store to be posted in the thread.

Every front-end posts them the same way: refusals and what is left out become notes,
and a file over the platform's upload limit stays in the thread's files only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from controller.events import FilesChanged
from controller.stores.base import StoreError, ThreadStore

MAX_UPLOADS = 10


async def files_to_post(
    store: ThreadStore, thread_id: str, event: FilesChanged, limit: int, note: Callable[[str], None]
) -> AsyncIterator[tuple[str, bytes]]:
    """(name, bytes) of each changed file to post, at most MAX_UPLOADS of them."""
    for name, reason in event.refused.items():
        note(f"`{name}` was not saved: {reason}.")
    if len(event.changed) > MAX_UPLOADS:
        note(f"{len(event.changed) - MAX_UPLOADS} more changed files are saved in the thread's files.")
    sizes = {f.name: f.size for f in await asyncio.to_thread(store.list_files, thread_id)}
    for name in event.changed[:MAX_UPLOADS]:
        size = sizes.get(name, 0)
        if size > limit:
            note(
                f"`{name}` ({size / 2**20:.1f} MiB) is too big to post here; it is saved in the thread's files."
            )
            continue
        try:
            data = await asyncio.to_thread(store.read_file, thread_id, name)
        except StoreError as exc:
            note(f"`{name}` could not be read back from storage ({exc}).")
            continue
        yield name, data
