"""What can be done to a thread besides a turn, in one place for the HTTP API and the chat
front-ends: forget its kept variables, fork it, upgrade its profile. Each takes the thread's
record, found and checked by the caller (the API: controller/lookup.py; a chat: the thread it
is in)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller import kernelstate
from controller.fork import copy_thread, describe
from controller.manager import SandboxManager
from controller.profiles import Profile, profile_changes
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


@dataclass(frozen=True)
class Upgraded:
    profile: str
    old: str | None  # the version it was pinned to (None: none yet)
    new: str
    changed: list[str]  # the profile's fields that differ between the two
    stopped: bool  # a running sandbox was stopped, its files and variables saved
    note: str  # what happened, for the user

    @property
    def upgraded(self) -> bool:
        return self.old != self.new


async def upgrade_thread(ops: ThreadOps, record: ThreadRecord) -> Upgraded:
    """Move the thread to the current version of its profile. A sandbox of it that runs saves
    its variables and files and stops between two turns (as idle reaping does), so the next
    turn starts the new version and restores both; if the variables cannot be loaded there,
    that turn says so and the files are all there. Raises profiles.UnknownProfile (the
    profile is no longer defined: the thread keeps its version). POST /threads/{id}/upgrade,
    and a chat's "upgrade"."""
    source = ops.manager.profiles
    old, new = await asyncio.to_thread(source.upgrade_target, record)
    if old is not None and old.version == new.version:
        note = f"This thread already runs the current version of profile {new.name} ({new.version})."
        return Upgraded(new.name, old.version, new.version, [], False, note)
    # Pinned first: a turn that starts meanwhile runs the old sandbox, which then stops.
    await asyncio.to_thread(source.pin, record.id, new)
    stopped = await ops.manager.stop_between_turns(record.id, "upgrade")
    changed = profile_changes(old, new)
    note = _upgrade_note(old, new, changed)
    return Upgraded(new.name, old.version if old else None, new.version, changed, stopped, note)


def _upgrade_note(old: Profile | None, new: Profile, changed: list[str]) -> str:
    what = f" ({', '.join(changed)} changed)" if changed else ""
    start = f"Profile {new.name}: {old.version if old else 'unpinned'} -> {new.version}{what}."
    if new.keep_state:
        after = "The next message starts the new version with this thread's files and variables."
    else:
        after = "The next message starts the new version with this thread's files; it keeps no variables."
    return f"{start} {after}"
