"""ThreadStore on a local directory: the embedded default.

Layout: ``<root>/threads/<thread_id>/files/<name>``, ``<key>.json`` beside it,
and ``index.json`` with each file's size and sha256 so listing never rehashes.
Non-thread state is ``<root>/state/<key>.json`` (mode 0600), reached only through
directory descriptors opened with O_NOFOLLOW, so a planted symlink is never followed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from controller.filenames import NameConflict
from controller.stores.base import (
    NotInStore,
    StoredFile,
    StoreUnavailable,
    check_state_key,
    claim_name,
    names_after,
)

COPY_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace_with(path, lambda tmp: Path(tmp).write_bytes(data))


def _replace_with(dest: Path, fill: Callable[[str], object]) -> None:
    """``fill`` a temporary file beside ``dest``, then rename it to ``dest``; on any failure
    the temporary file is removed, so no ``.tmp-*`` ever outlives an error."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
    os.close(fd)
    try:
        fill(tmp)
        os.replace(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def _thread(self, thread_id: str) -> Path:
        return self.root / "threads" / thread_id

    def _index(self, thread_id: str) -> dict[str, dict[str, Any]]:
        path = self._thread(thread_id) / "index.json"
        return json.loads(path.read_bytes()) if path.exists() else {}

    def _save_index(self, thread_id: str, index: dict[str, dict[str, Any]]) -> None:
        _atomic_write(self._thread(thread_id) / "index.json", json.dumps(index).encode())

    def check(self) -> None:
        try:
            (self.root / "threads").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"the local store is not writable: {exc.strerror}") from exc

    def list_threads(self) -> list[str]:
        base = self.root / "threads"
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.exists() else []

    def page_threads(self, after: str | None, limit: int) -> list[str]:
        return names_after(self.list_threads(), after, limit)

    def get_json(self, thread_id: str, key: str) -> Any | None:
        try:  # not exists() first: a record removed in between is simply gone
            return json.loads((self._thread(thread_id) / f"{key}.json").read_bytes())
        except FileNotFoundError:
            return None

    def put_json(self, thread_id: str, key: str, value: Any) -> None:
        _atomic_write(self._thread(thread_id) / f"{key}.json", json.dumps(value).encode())

    def list_json(self, thread_id: str, folder: str) -> dict[str, Any]:
        base = self._thread(thread_id) / folder
        if not base.is_dir():
            return {}
        names = sorted(p.name[: -len(".json")] for p in base.iterdir() if p.name.endswith(".json"))
        values = {n: self.get_json(thread_id, f"{folder}/{n}") for n in names}
        return {n: v for n, v in values.items() if v is not None}

    def delete_json(self, thread_id: str, key: str) -> None:
        (self._thread(thread_id) / f"{key}.json").unlink(missing_ok=True)

    def list_files(self, thread_id: str) -> list[StoredFile]:
        with self._lock:
            return [StoredFile(name=n, **v) for n, v in sorted(self._index(thread_id).items())]

    def put_file(self, thread_id: str, name: str, source: Path, sha256: str) -> StoredFile:
        dest = self._thread(thread_id) / "files" / name
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            _replace_with(dest, partial(shutil.copyfile, source))
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
            raise NameConflict(f"{name!r} collides with a stored file or folder of the same name") from exc
        stored = StoredFile(name=name, size=dest.stat().st_size, sha256=sha256, modified=time.time())
        with self._lock:
            index = self._index(thread_id)
            index[name] = {"size": stored.size, "sha256": sha256, "modified": stored.modified}
            self._save_index(thread_id, index)
        return stored

    def _file(self, thread_id: str, name: str) -> Path:
        path = self._thread(thread_id) / "files" / name
        if not path.is_file():
            raise NotInStore(f"no file {name!r} in thread {thread_id}")
        return path

    def download_file(self, thread_id: str, name: str, out: BinaryIO) -> None:
        with self._file(thread_id, name).open("rb") as fh:
            shutil.copyfileobj(fh, out, COPY_CHUNK)

    def read_file(self, thread_id: str, name: str) -> bytes:
        return self._file(thread_id, name).read_bytes()

    def delete_file(self, thread_id: str, name: str) -> None:
        files = self._thread(thread_id) / "files"
        (files / name).unlink(missing_ok=True)
        # Folders emptied by the delete go too: a file of the folder's name may come next.
        for folder in (files / name).parents:
            if folder == files:
                break
            try:
                folder.rmdir()
            except OSError:  # not empty
                break
        with self._lock:
            index = self._index(thread_id)
            if index.pop(name, None) is not None:
                self._save_index(thread_id, index)

    def _blob(self, thread_id: str, key: str) -> Path:
        return self._thread(thread_id) / "blobs" / check_state_key(key)

    def put_blob(self, thread_id: str, key: str, source: Path) -> int:
        dest = self._blob(thread_id, key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        _replace_with(dest, partial(shutil.copyfile, source))
        return dest.stat().st_size

    def download_blob(self, thread_id: str, key: str, out: BinaryIO) -> None:
        try:
            fh = self._blob(thread_id, key).open("rb")
        except FileNotFoundError:
            raise NotInStore(f"no {key} in thread {thread_id}") from None
        with fh:
            shutil.copyfileobj(fh, out, COPY_CHUNK)

    def delete_blob(self, thread_id: str, key: str) -> None:
        self._blob(thread_id, key).unlink(missing_ok=True)

    def blob_size(self, thread_id: str, key: str) -> int | None:
        try:
            return self._blob(thread_id, key).stat().st_size
        except FileNotFoundError:
            return None

    def copy_file(self, thread_id: str, name: str, to_thread: str) -> StoredFile:
        with self._lock:
            entry = self._index(thread_id).get(name)
        if entry is None:
            raise NotInStore(f"no file {name!r} in thread {thread_id}")
        return self.put_file(to_thread, name, self._file(thread_id, name), entry["sha256"])

    def copy_blob(self, thread_id: str, key: str, to_thread: str) -> int:
        try:
            return self.put_blob(to_thread, key, self._blob(thread_id, key))
        except FileNotFoundError:
            raise NotInStore(f"no {key} in thread {thread_id}") from None

    def delete_thread(self, thread_id: str) -> None:
        shutil.rmtree(self._thread(thread_id), ignore_errors=True)

    def _claim_path(self, key: str) -> Path:
        return self.root / "claims" / claim_name(key)

    def claim(self, key: str) -> bool:
        path = self._claim_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True

    def release(self, key: str) -> None:
        self._claim_path(key).unlink(missing_ok=True)

    @contextmanager
    def _state_dir(self, parts: list[str], create: bool) -> Iterator[int | None]:
        """A descriptor of ``state/<parts...>``, or None when it does not exist (and not ``create``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, _DIR_FLAGS & ~os.O_NOFOLLOW)
        try:
            for part in ["state", *parts]:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o700, dir_fd=fd)
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    yield None
                    return
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def get_state(self, key: str) -> Any | None:
        *parts, name = check_state_key(key).split("/")
        with self._state_dir(parts, create=False) as dfd:
            if dfd is None:
                return None
            try:
                fd = os.open(f"{name}.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            except FileNotFoundError:
                return None
            with os.fdopen(fd, "rb") as fh:
                return json.loads(fh.read())

    def put_state(self, key: str, value: Any) -> None:
        *parts, name = check_state_key(key).split("/")
        tmp = f".tmp-{secrets.token_hex(8)}"
        with self._state_dir(parts, create=True) as dfd:
            assert dfd is not None
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with os.fdopen(os.open(tmp, flags, 0o600, dir_fd=dfd), "wb") as fh:
                fh.write(json.dumps(value).encode())
            os.replace(tmp, f"{name}.json", src_dir_fd=dfd, dst_dir_fd=dfd)

    def delete_state(self, key: str) -> None:
        *parts, name = check_state_key(key).split("/")
        with self._state_dir(parts, create=False) as dfd:
            if dfd is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{name}.json", dir_fd=dfd)

    def list_state(self, prefix: str) -> dict[str, Any]:
        values = {f"{prefix}/{n}": self.get_state(f"{prefix}/{n}") for n in self._state_names(prefix)}
        return {k: v for k, v in values.items() if v is not None}

    def page_state(self, prefix: str, after: str | None, limit: int) -> list[str]:
        return names_after(self._state_names(prefix), after, limit)

    def _state_names(self, prefix: str) -> list[str]:
        with self._state_dir(check_state_key(prefix).split("/"), create=False) as dfd:
            if dfd is None:
                return []
            return sorted(
                e.name[: -len(".json")]
                for e in os.scandir(dfd)
                if e.name.endswith(".json") and e.is_file(follow_symlinks=False)
            )
