"""Sync between a sandbox's workspace directory and the ThreadStore.

``restore`` brings the thread's files into an empty workspace; ``persist``
uploads only what changed since the last sync (size+mtime first, then sha256)
and deletes from the store only files that were synced before and are now gone,
so a workspace that failed to restore can never wipe the store.
Runs in the controller for the local backend and inside sandbox pods for the
Kubernetes backend, so it depends on nothing but the store interface.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from controller.filenames import BadFilename, clean_filename
from controller.quotas import QuotaExceeded, Quotas, Usage, user_usage
from controller.stores.base import NotInStore, StoredFile, ThreadStore

SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints", ".git"}
# Files downloaded at once by restore: overlaps each request's latency and the disk writes.
RESTORE_WORKERS = 4


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
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
    """Regular files under ``root`` by workspace name; symlinks are never followed."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for fname in filenames:
            path = Path(dirpath) / fname
            if path.is_symlink() or not path.is_file():
                continue
            found[path.relative_to(root).as_posix()] = path
    return found


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
        # What we know equals the store; None until the first restore or persist.
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
        dest = self.root / f.name
        try:
            self.store.download_file(self.thread_id, f.name, dest)
        except NotInStore:
            return None  # deleted between list and get
        st = dest.stat()
        return f.name, _Seen(st.st_size, st.st_mtime_ns, f.sha256)

    def _baseline(self) -> dict[str, _Seen]:
        if self._seen is None:
            # Adopted sandbox: trust the store's hashes; mtimes unknown, so everything is rehashed once.
            self._seen = {f.name: _Seen(f.size, -1, f.sha256) for f in self.store.list_files(self.thread_id)}
        return self._seen

    def persist(self) -> PersistResult:
        seen = self._baseline()
        result = PersistResult()
        present = scan(self.root) if self.root.exists() else {}
        thread_use = Usage(len(seen), sum(s.size for s in seen.values()))
        others: Usage | None = None  # the user's other threads: listed only once a file needs uploading
        for name, path in sorted(present.items()):
            st = path.stat()
            old = seen.get(name)
            if old and (old.size, old.mtime_ns) == (st.st_size, st.st_mtime_ns):
                continue
            sha = sha256_file(path)
            if old and old.sha256 == sha:
                seen[name] = _Seen(st.st_size, st.st_mtime_ns, sha)
                continue
            try:
                clean_filename(name)
                after = thread_use.replace(old.size if old else None, st.st_size)
                if others is None and self.user and self.quotas.per_user:
                    others = user_usage(self.store, self.user, self.thread_id)
                self.quotas.check_write(name, st.st_size, after, others)
            except (BadFilename, QuotaExceeded) as exc:
                result.refused[name] = str(exc)
                continue
            self.store.put_file(self.thread_id, name, path, sha)
            seen[name] = _Seen(st.st_size, st.st_mtime_ns, sha)
            thread_use = after
            result.changed.append(name)
            result.bytes += st.st_size
        for name in sorted(set(seen) - set(present)):
            self.store.delete_file(self.thread_id, name)
            del seen[name]
            result.deleted.append(name)
        return result

    def write(self, name: str, data: bytes) -> None:
        """Put an uploaded file into the live workspace and record it as synced."""
        dest = self.root / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        st = dest.stat()
        self._baseline()[name] = _Seen(st.st_size, st.st_mtime_ns, hashlib.sha256(data).hexdigest())
