"""Running one piece of code in a live sandbox, and saving what it changed.

The manager decides which sandbox and when; this runs the code, counts it, names a dead
kernel's cause, and persists the workspace after it, so the files event comes before Done.

The invariant kept: an execution's Done is sent only once every change to the workspace
that it made is in the store (or the user is told it is not). The sync is skipped only when
the kernel says the execution changed nothing (sandbox-image's changes.py) and no earlier
sync failed; a kernel that cannot say is synced.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from controller.backends.base import Backend, SandboxInfo, Session
from controller.events import Done, Error, Event, FilesChanged
from controller.kernel import RESTART_NOTE
from controller.kernelstate import Saved
from controller.metrics import Metrics
from controller.usage.figures import add_execution
from controller.workspace import plain_reason

log = logging.getLogger(__name__)

COUNTED_ERRORS = ("timeout", "kernel_died", "sandbox_failed")


@dataclass
class Live:
    info: SandboxInfo
    session: Session
    user: str | None
    unsaved: bool = False  # the last sync failed: the next execution syncs, changes or not


@dataclass(frozen=True)
class Checkpoint:
    """What a live sandbox saved between two turns, so that a copy of its storage is current."""

    files_saved: bool
    state_missed: str | None  # None: the store holds its variables as they are; else why not


class Executions:
    def __init__(self, backend: Backend[Any], metrics: Metrics, grace: float, max_output: int) -> None:
        self.backend = backend
        self.metrics = metrics
        self.grace = grace
        self.max_output = max_output
        # Kernel variables are kept up to this many bytes, by sandboxes whose profile keeps
        # them; ``keep_state`` stands for the profile of a sandbox adopted and not used since.
        self.state_max = 0
        self.keep_state = False

    def state_cap(self, info: SandboxInfo) -> int | None:
        """The most bytes of variables this sandbox saves; None: its profile keeps none."""
        keep = info.profile.keep_state if info.profile is not None else self.keep_state
        return self.state_max if keep else None

    async def run(self, live: Live, code: str, timeout: float) -> AsyncIterator[Event]:
        """The kernel's events, then the files it changed (or why they were not saved), then Done."""
        done: Done | None = None
        error_kind = None
        async for event in live.session.execute(code, timeout, self.grace, self.max_output):
            if isinstance(event, Error):
                error_kind = event.kind
                if event.kind == "kernel_died" and (cause := await self.backend.died_of(live.info)):
                    event = event.model_copy(
                        update={"evalue": f"The kernel stopped: {cause}. {RESTART_NOTE}"}
                    )
            if isinstance(event, Done):
                done = event
                continue  # the files event goes before Done
            yield event
        if done is None:
            raise RuntimeError("the kernel session ended an execution without Done")
        self.metrics.executions.labels(error_kind if error_kind in COUNTED_ERRORS else done.status).inc()
        self.metrics.execution_seconds.observe(done.seconds)
        add_execution(done.seconds)
        if live.session.workspace_changed is False and not live.unsaved:
            self.metrics.syncs_skipped.inc()
            yield done
            return
        files = await self._persist(live)
        if files is not None:
            yield files
        yield done

    async def _persist(self, live: Live) -> FilesChanged | Error | None:
        try:
            result = await self.backend.persist(live.info, live.user)
        except Exception as exc:  # a store outage must not lose the turn's output
            live.unsaved = True
            self.metrics.persist_errors.inc()
            log.exception("persist failed for thread %s", live.info.thread_id)
            return Error(
                kind="sandbox_failed",
                ename="PersistFailed",
                evalue=f"Your files could not be saved right now ({plain_reason(exc)}); they are kept in "
                "the sandbox and saved again after the next message.",
            )
        live.unsaved = False
        self.metrics.persisted_bytes.inc(result.bytes)
        if not (result.changed or result.deleted or result.refused):
            return None
        return FilesChanged(changed=result.changed, deleted=result.deleted, refused=result.refused)

    async def before_stop(self, info: SandboxInfo, user: str | None, reason: str) -> str:
        """Save what a stopping sandbox holds (variables, then files); how it went, for the stop
        record. Never raises. ``released``: the sandbox goes on running without this controller."""
        if reason == "died":
            return "its kernel died, so nothing more was saved"
        kept = await self._kept(info, user, reason)
        if await self.persist_quietly(info, user):
            return "its files were saved" + kept
        return "its files could NOT be saved (see the controller log)" + kept

    async def _kept(self, info: SandboxInfo, user: str | None, reason: str) -> str:
        if reason in ("deleted", "forget", "released"):
            return ""
        if reason == "timeout":  # a save would wait behind the code that would not stop, for 120 s
            return "; its variables were not saved: its code would not stop"
        return await self._keep_state(info, user)

    async def _keep_state(self, info: SandboxInfo, user: str | None) -> str:
        if (cap := self.state_cap(info)) is None:
            return ""
        saved = await self._save_state(info, cap, user)
        if isinstance(saved, Exception):
            return "; its variables could NOT be saved (see the controller log)"
        return f"; {saved.describe()}"

    async def _save_state(self, info: SandboxInfo, cap: int, user: str | None) -> Saved | Exception:
        """The kernel's save, or why it failed (logged): never raised, as what comes next
        (saving the files, stopping the sandbox, a fork's copy) must happen all the same."""
        try:
            saved = await self.backend.save_state(info, cap, user)
        except Exception as exc:
            log.warning("the variables of thread %s were not saved: %s", info.thread_id, exc)
            return exc
        if saved.over_cap:
            log.warning("the variables of thread %s were not saved: %s", info.thread_id, saved.describe())
        return saved

    async def checkpoint(self, live: Live | None, thread_id: str, user: str | None) -> Checkpoint | None:
        """Between two turns of the thread, save the variables, then the files, of its sandbox
        that runs (a fork copies them), which goes on running; None if none runs."""
        if live is not None:
            return await self._checkpoint(live.info, live.user, live.session.last_state == "idle")
        # Running with no turn here since (adopted after a restart, or another replica's pod):
        # its kernel holds variables newer than any saved.
        info = await self.backend.find(thread_id)
        return None if info is None else await self._checkpoint(info, user, idle=True)

    async def _checkpoint(self, info: SandboxInfo, user: str | None, idle: bool) -> Checkpoint:
        """``idle``: its kernel was last seen waiting for code."""
        missed = await self._state_now(info, user, idle)
        return Checkpoint(await self.persist_quietly(info, user), missed)

    async def _state_now(self, info: SandboxInfo, user: str | None, idle: bool) -> str | None:
        if (cap := self.state_cap(info)) is None:
            return "its profile does not keep variables (keep_state false, or THREADBOX_KEEP_STATE=false)"
        if not idle or not await self.backend.alive(info):
            return "its kernel is not running"
        saved = await self._save_state(info, cap, user)
        if isinstance(saved, Exception):
            return f"its variables could not be saved ({plain_reason(saved)})"
        if saved.over_cap:
            return (
                f"its variables take more than the {saved.cap:,} bytes that "
                "THREADBOX_STATE_MAX_BYTES and the storage quotas leave them"
            )
        return None

    async def load_state(self, info: SandboxInfo) -> str | None:
        """In a new sandbox, before the first turn: the line that tells the user what came back
        (an adopted sandbox's kernel still holds its own variables)."""
        if (cap := self.state_cap(info)) is None or info.kind == "adopted":
            return None
        try:
            return await self.backend.load_state(info, cap)
        except Exception as exc:
            log.warning("the saved variables of thread %s were not loaded: %s", info.thread_id, exc)
            return f"Kernel state: the saved variables could not be loaded ({plain_reason(exc)})."

    async def persist_quietly(self, info: SandboxInfo, user: str | None) -> bool:
        """Before a sandbox stops: logged and counted on failure, never raised."""
        try:
            result = await self.backend.persist(info, user)
        except Exception:
            self.metrics.persist_errors.inc()
            log.exception("persist before stop failed for thread %s", info.thread_id)
            return False
        self.metrics.persisted_bytes.inc(result.bytes)
        return True
