"""Forking a thread: a new thread of the same owner with a copy of the original's files, saved
kernel state and agent conversation (issue 15).

The copy is made inside the store (``copy_file``, ``copy_blob``: server-side on MinIO), by the
controller: the snapshot is only ever bytes here, unpickled by nothing but the fork's own
sandbox, with its own credentials, at its first start. The fork's record is written last, so
a copy cut short is never a thread, and is removed. Blocking (store calls): callers use a
worker thread. ``controller/threadops.py`` first has a running original save (``between_turns``).
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass

from controller.agent.builtin import HISTORY_KEY as BUILTIN_HISTORY
from controller.agent.open_interpreter import HISTORY_KEY as OI_HISTORY
from controller.execution import Checkpoint
from controller.identity import ThreadKey
from controller.profiles import PIN_KEY
from controller.quotas import SNAPSHOT, Quotas, Usage, user_usage
from controller.stores.base import NotInStore, ThreadStore
from controller.threads import ThreadRecord, delete_record, get_thread, new_record, save_record

MAX_NAME = 200  # as POST /threads takes
HISTORIES = (BUILTIN_HISTORY, OI_HISTORY)  # each agent's conversation: the fork's agent goes on from it


class ThreadExists(Exception):
    """The fork's name is taken; nothing was written."""


@dataclass(frozen=True)
class Copied:
    files: int
    bytes: int
    state: bool  # the fork has a snapshot of variables, which its first start loads


def default_name(name: str) -> str:
    suffix = f"-fork-{secrets.token_hex(3)}"
    return name[: MAX_NAME - len(suffix)] + suffix


def fork_record(source: ThreadRecord, key: ThreadKey, name: str, user: str | None) -> ThreadRecord:
    return new_record(key, name, user, forked_from=source.id, profile=source.profile)


def copy_thread(
    store: ThreadStore, quotas: Quotas, source: ThreadRecord, target: ThreadRecord, with_state: bool
) -> Copied:
    """Copy ``source``'s files, and its snapshot if ``with_state``, into the new thread
    ``target``. ThreadExists, or QuotaExceeded when the owner's limits would break, with
    nothing written."""
    if get_thread(store, target.id) is not None:
        raise ThreadExists(f"a thread named {target.name!r} exists already; choose another name")
    files = Usage.of(listed := store.list_files(source.id))
    snapshot = store.blob_size(source.id, SNAPSHOT) if with_state else None
    usage = files + Usage(0, snapshot or 0)
    _check_quotas(store, quotas, target, usage)
    try:
        for f in listed:
            with contextlib.suppress(NotInStore):  # deleted since the listing: the fork goes without
                store.copy_file(source.id, f.name, target.id)
        copied = snapshot is not None and _copy_snapshot(store, source.id, target.id)
        _copy_histories(store, source.id, target.id)
        # The same profile version as the original: its variables were saved under that one.
        if (pin := store.get_json(source.id, PIN_KEY)) is not None:
            store.put_json(target.id, PIN_KEY, pin)
        save_record(store, target)
    except BaseException:
        delete_record(store, target)  # its owner's index entry too, which save_record writes first
        raise
    return Copied(files.files, files.bytes, copied)


def _copy_snapshot(store: ThreadStore, source: str, target: str) -> bool:
    try:
        store.copy_blob(source, SNAPSHOT, target)
    except NotInStore:  # forgotten since it was measured
        return False
    return True


def _copy_histories(store: ThreadStore, source: str, target: str) -> None:
    """Each exchange is a JSON record of its own (controller/agent/history.py); an older
    version's whole history is one record, which the fork's first load splits as any other."""
    for key in HISTORIES:
        for name, exchange in store.list_json(source, key).items():
            store.put_json(target, f"{key}/{name}", exchange)
        if (whole := store.get_json(source, key)) is not None:
            store.put_json(target, key, whole)


def _check_quotas(store: ThreadStore, quotas: Quotas, target: ThreadRecord, usage: Usage) -> None:
    what = f"the fork {target.name!r}"
    quotas.check_thread(what, usage)
    if target.user and quotas.per_user:
        quotas.check_user(what, user_usage(store, target.user, target.id) + usage)


def describe(checkpoint: Checkpoint | None, copied: Copied) -> str:
    """What the fork got, in a sentence for the caller."""
    files = f"{copied.files} file(s), {copied.bytes:,} bytes"
    if checkpoint is None:
        state = (
            "the variables saved when the original's sandbox last stopped"
            if copied.state
            else "no variables (the original has none saved)"
        )
        return f"Forked with {files} and {state}."
    stale = "" if checkpoint.files_saved else " as last stored (its latest could not be saved)"
    if checkpoint.state_missed is None and copied.state:
        return f"Forked with {files}{stale}, and the variables of its running sandbox, saved just now."
    why = checkpoint.state_missed or "no variables were saved"
    return f"Forked with {files}{stale} only, without variables: {why}."
