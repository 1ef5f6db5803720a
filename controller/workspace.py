"""Sync between a sandbox's workspace directory and the ThreadStore.

``restore`` brings the thread's files into an empty workspace; ``persist``
uploads only what changed since the last sync (size+mtime first, then sha256)
and deletes from the store only files that were synced before and are now gone,
so a workspace that failed to restore can never wipe the store. Files are stored
under their NFC names (``controller/filenames.py``), and everything written into
the workspace goes through ``controller/nofollow.py``, never through a link.
Runs in the controller for the local backend and inside sandbox pods for the
Kubernetes backend, so it depends on nothing but the store interface.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO

from controller.filenames import BadFilename, NameConflict, clean_filename
from controller.nofollow import fd_path, open_regular, place
from controller.quotas import QuotaExceeded, Quotas, Usage, UserQuota, snapshot_usage, user_usage
from controller.stores.base import NotInStore, StoredFile, ThreadStore

log = logging.getLogger(__name__)

SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints", ".git"}
# Files downloaded at once by restore: overlaps each request's latency and the disk writes.
RESTORE_WORKERS = 4


def sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return sha256_stream(fh)


def sha256_stream(fh: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


@dataclass
class PersistResult:
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    bytes: int = 0


@dataclass(frozen=True)
class _Seen:
    size: int
    mtime_ns: int
    sha256: str


def scan(root: Path) -> dict[str, Path]:
    """Regular files under ``root`` by workspace name. Links are never followed, not even a
    folder that code swaps for a link mid-scan: fwalk holds each folder open."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames, dir_fd in os.fwalk(root, follow_symlinks=False):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for fname in filenames:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISREG(os.stat(fname, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    name = Path(dirpath, fname).relative_to(root).as_posix()
                    found[name] = root / name
    return found


def by_clean_name(found: Iterable[str], refused: dict[str, str]) -> dict[str, str]:
    """Workspace names by their clean (NFC) form; the others go to ``refused``, by raw name.

    Of two files whose names differ only in Unicode form, the first in sort order is kept.
    """
    clean: dict[str, str] = {}
    for raw in sorted(found):
        try:
            name = clean_filename(raw)
        except BadFilename as exc:
            refused[raw] = str(exc)
            continue
        if name in clean:
            refused[raw] = (
                f"another file has the same name, {name!r}, in Unicode's NFC form; only it is saved"
            )
            continue
        clean[name] = raw
    return clean


class OthersNeeded(Exception):
    """A per-user limit needs the user's usage in other threads, which the caller did not give."""


def plain_reason(exc: BaseException) -> str:
    """A failure in words for a user: an OSError's reason without the host path it names."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


class WorkspaceSync:
    def __init__(
        self,
        store: ThreadStore,
        thread_id: str,
        root: Path,
        quotas: Quotas,
        file_ttl_days: float = 0,
        user: str | None = None,
    ) -> None:
        self.store = store
        self.thread_id = thread_id
        self.root = root
        self.quotas = quotas
        self.ttl = file_ttl_days
        self.user = user
        # What we know equals the store, by stored name; None until the first restore or persist.
        self._seen: dict[str, _Seen] | None = None

    def live_files(self) -> list[StoredFile]:
        """Stored files, expiring (deleting) those past the TTL."""
        files = self.store.list_files(self.thread_id)
        now = time.time()
        for f in files:
            if f.expired(self.ttl, now):
                self.store.delete_file(self.thread_id, f.name)
        return [f for f in files if not f.expired(self.ttl, now)]

    def restore(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        files = self.live_files()
        # On the first failure map() cancels the downloads not yet started, and leaving the pool
        # waits for those under way, so nothing writes into the workspace after restore returns.
        with ThreadPoolExecutor(RESTORE_WORKERS, thread_name_prefix="restore") as pool:
            restored = [r for r in pool.map(self._download, files) if r]
        self._seen = dict(restored)
        return len(restored)

    def _download(self, f: StoredFile) -> tuple[str, _Seen] | None:
        try:
            # Kept under the stored name in _seen: a name stored before the NFC rule is then
            # replaced by its NFC form at the next persist.
            download = partial(self.store.download_file, self.thread_id, f.name)
            st = place(self.root, clean_filename(f.name), download, twins=False)  # a fresh workspace
        except NotInStore:
            return None  # deleted between list and get
        except (BadFilename, NameConflict) as exc:
            log.warning("not restoring %r of thread %s: %s", f.name, self.thread_id, exc)
            return None
        return f.name, _Seen(st.st_size, st.st_mtime_ns, f.sha256)

    def _baseline(self) -> dict[str, _Seen]:
        if self._seen is None:
            # Adopted sandbox: trust the store's hashes; mtimes unknown, so everything is rehashed once.
            self._seen = {f.name: _Seen(f.size, -1, f.sha256) for f in self.store.list_files(self.thread_id)}
        return self._seen

    def persist(self, user: UserQuota | None = None) -> PersistResult:
        """Sync the workspace to the store. ``user``: per-user limits from a caller whose store
        cannot list the user's other threads (a pod); without ``user.others`` it raises
        OthersNeeded at the first file to check, having only deleted, so a retry is safe."""
        seen = self._baseline()
        result = PersistResult()
        present = by_clean_name(scan(self.root) if self.root.exists() else (), result.refused)
        # Stale entries go first: a folder that code replaced by a file of the same name (or
        # the reverse) can only be stored once the old entries are gone.
        for name in sorted(set(seen) - set(present)):
            self.store.delete_file(self.thread_id, name)
            del seen[name]
            result.deleted.append(name)
        files = Usage(len(seen), sum(s.size for s in seen.values()))
        budget = self._budget(files + self._snapshot(user), user)
        for name, raw in sorted(present.items()):
            # One file that cannot be saved never stops the files after it.
            try:
                self._save(name, raw, budget, result)
            except (QuotaExceeded, NameConflict) as exc:
                result.refused[name] = str(exc)
            except OSError as exc:  # gone or unreadable since the scan, or the local store failed
                result.refused[name] = f"{name} could not be saved: {plain_reason(exc)}"
        return result

    def _save(self, name: str, raw: str, budget: _Budget, result: PersistResult) -> None:
        seen = self._baseline()
        with open_regular(self.root, raw) as fh:
            st = os.fstat(fh.fileno())
            old = seen.get(name)
            if old and (old.size, old.mtime_ns) == (st.st_size, st.st_mtime_ns):
                return
            sha = sha256_stream(fh)
            if old is None or old.sha256 != sha:
                after = budget.thread.replace(old.size if old else None, st.st_size)
                budget.quotas.check_write(name, st.st_size, after, budget.user_elsewhere())
                # The very file already open, whatever code has done to the workspace path since.
                self.store.put_file(self.thread_id, name, fd_path(fh.fileno()), sha)
                budget.thread = after
                result.changed.append(name)
                result.bytes += st.st_size
        seen[name] = _Seen(st.st_size, st.st_mtime_ns, sha)

    def _snapshot(self, user: UserQuota | None) -> Usage:
        """The thread's saved kernel state, which counts like files' bytes: asked of the store
        only when a byte limit applies."""
        limited = self.quotas.thread_max_bytes or self.quotas.user_max_bytes or (user and user.max_bytes)
        return snapshot_usage(self.store, self.thread_id) if limited else Usage()

    def _budget(self, thread: Usage, user: UserQuota | None) -> _Budget:
        if user is not None:
            return _Budget(thread, user.applied_to(self.quotas), user.others, _needed)
        count = partial(user_usage, self.store, self.user, self.thread_id) if self.user else None
        return _Budget(thread, self.quotas, None, count)

    def write(self, name: str, data: bytes) -> None:
        """Put an uploaded file (clean name) into the live workspace and record it as synced.

        Raises NameConflict, writing nothing, when a link, a folder or a file is in the way.
        """
        st = place(self.root, name, lambda fh: fh.write(data))
        self._baseline()[name] = _Seen(st.st_size, st.st_mtime_ns, hashlib.sha256(data).hexdigest())


def _needed() -> Usage:
    raise OthersNeeded("checking the per-user limits needs the user's files in their other threads")


@dataclass
class _Budget:
    """The thread's usage as persist goes, and the user's other threads once needed."""

    thread: Usage
    quotas: Quotas
    others: Usage | None = None
    count_others: Callable[[], Usage] | None = None  # None: no per-user check

    def user_elsewhere(self) -> Usage | None:
        if self.others is None and self.quotas.per_user and self.count_others is not None:
            self.others = self.count_others()
        return self.others
