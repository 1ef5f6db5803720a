"""What can be done to a thread besides a turn, in one place for the HTTP API and the chat
front-ends: forget its kept variables, fork it. Each takes the thread's record, found and
checked by the caller (the API: controller/lookup.py; a chat: the thread it is in)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller import kernelstate
from controller.fork import copy_thread, describe
from controller.manager import SandboxManager
from controller.quotas import Quotas
from controller.stores.base import ThreadStore
from controller.threads import ThreadRecord

if TYPE_CHECKING:  # runtime.py installs the front-ends that call these: no import cycle
    from controller.runtime import Runtime


@dataclass(frozen=True)
class ThreadOps:
    """What these operations need of the runtime, and no more: the chat pipeline holds one
    without the whole Runtime, and a unit test builds it from fakes."""

    store: ThreadStore
    manager: SandboxManager
    quotas: Quotas
    keep_state: bool

    @classmethod
    def of(cls, rt: Runtime) -> ThreadOps:
        return cls(rt.store, rt.manager, rt.quotas, rt.settings.keep_state)


async def forget_state(ops: ThreadOps, thread_id: str) -> bool:
    """Forget the thread's kept variables: its sandbox here stops (files saved, variables not)
    and its snapshot is deleted, so its next turn starts a fresh kernel. True if a sandbox
    was stopped. DELETE /threads/{id}/state, and a chat's "forget state"."""
    stopped = await ops.manager.forget_state(thread_id)
    await asyncio.to_thread(ops.store.delete_blob, thread_id, kernelstate.BLOB)
    return stopped


@dataclass(frozen=True)
class Forked:
    record: ThreadRecord
    state: bool  # the fork has the original's variables
    note: str  # what it got, for the user


async def fork_thread(ops: ThreadOps, source: ThreadRecord, target: ThreadRecord) -> Forked:
    """Make ``target`` (a new record, ``forked_from`` the source) a copy of ``source``'s files,
    variables and agent conversation. A sandbox of the source that runs (here, adopted, or
    another replica's pod) saves its variables and files first, between its turns, and its
    next turn waits for the copy; if its variables cannot be saved, the fork gets no variables
    and the note says why. Raises fork.ThreadExists or QuotaExceeded, nothing written.
    POST /threads/{id}/fork, and a chat's "fork" (with a target of its own: fork.fork_record)."""
    async with ops.manager.between_turns(source.id, source.user) as checkpoint:
        with_state = ops.keep_state and (checkpoint is None or checkpoint.state_missed is None)
        copied = await asyncio.to_thread(copy_thread, ops.store, ops.quotas, source, target, with_state)
    return Forked(target, copied.state, describe(checkpoint, copied))
