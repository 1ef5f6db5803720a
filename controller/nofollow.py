"""Writing a file into a workspace that untrusted code controls, never through a link.

The workspace is written by sandboxed code (as another uid) while the controller,
which may run as root, writes uploads and restored files into it. So every path
inside it is hostile: it may be a symlink to a host file or a folder swapped in
at any moment. Every step here is relative to a directory descriptor opened with
``O_NOFOLLOW``, and the file is created under a temporary name in its final
folder and renamed over the target; nothing is checked and then opened by name.
A link anywhere in the path, or a file where a folder is needed (or the reverse),
is refused with ``NameConflict`` and nothing is written. Reading for persist goes
the same way (``open_regular``), so code that swaps a file for a link to a host
file after the scan never gets the controller to read and store that file.

Each path segment is matched to an existing entry with the same NFC form (see
``controller/filenames.py``), so an upload replaces a file that code named in
decomposed Unicode instead of creating a look-alike beside it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from controller.filenames import NameConflict

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
TMP_PREFIX = ".tmp-"


def place(root: Path, name: str, fill: Callable[[BinaryIO], object], *, twins: bool = True) -> os.stat_result:
    """Create or replace ``root/name`` with what ``fill`` writes; returns the new file's stat.

    ``name`` is a clean workspace name (``/``-separated, no ``..``). Missing folders are
    created. On any failure the target is unchanged and no temporary file is left.
    ``twins=False`` skips looking for entries of another Unicode form (one listing per
    missing name): for a restore into a fresh workspace, where there are none.
    """
    *folders, leaf = _split(name)
    with _folder(root, folders, create=True, twins=twins) as fd:
        return _replace(fd, _entry(fd, leaf) if twins else leaf, name, fill)


@contextmanager
def open_regular(root: Path, name: str) -> Iterator[BinaryIO]:
    """The regular file ``root/name`` open for reading, reached without following a link.

    Raises NameConflict when a link or anything but a regular file is in the way (code may
    swap one in after a scan), FileNotFoundError when it is gone.
    """
    *folders, leaf = _split(name)
    with _folder(root, folders, create=False, twins=False) as dir_fd:
        try:
            fd = os.open(leaf, _READ, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise _refusal(dir_fd, leaf, name, "a file") from exc
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NameConflict(f"{name!r} is not a regular file")
        yield fh


def fd_path(fd: int) -> Path:
    """A path that opens the file behind ``fd`` itself, whatever has since become of its
    name (or if it never had one), for callers that take a path."""
    return Path(f"/proc/self/fd/{fd}")


def _split(name: str) -> list[str]:
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"not a clean workspace name: {name!r}")
    return parts


@contextmanager
def _folder(root: Path, folders: list[str], create: bool, twins: bool) -> Iterator[int]:
    """A descriptor of ``root/folders...``, each step opened without following a link."""
    fd = os.open(root, _DIR)
    try:
        for depth, part in enumerate(folders, 1):
            actual = _entry(fd, part) if twins else part
            child = _enter(fd, actual, "/".join(folders[:depth]), create)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _entry(dir_fd: int, part: str) -> str:
    """The folder's entry for ``part``: itself, or an existing name with the same NFC form."""
    with contextlib.suppress(FileNotFoundError):
        os.stat(part, dir_fd=dir_fd, follow_symlinks=False)
        return part
    twins = [e for e in os.listdir(dir_fd) if unicodedata.normalize("NFC", e) == part]
    return min(twins) if twins else part


def _enter(dir_fd: int, actual: str, shown: str, create: bool) -> int:
    """A descriptor of sub-folder ``actual`` (created if missing and ``create``); never a link's target."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(actual, dir_fd=dir_fd)
    try:
        return os.open(actual, _DIR, dir_fd=dir_fd)
    except OSError as exc:
        raise _refusal(dir_fd, actual, shown, "a folder") from exc


def _refusal(dir_fd: int, actual: str, shown: str, wanted: str) -> NameConflict:
    try:
        mode = os.stat(actual, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        return NameConflict(f"{shown!r} changed in the workspace meanwhile")
    if stat.S_ISLNK(mode):
        return NameConflict(f"{shown!r} is a symbolic link in the workspace, and links are never followed")
    kind = (
        "a folder" if stat.S_ISDIR(mode) else "a file" if stat.S_ISREG(mode) else "a pipe, socket or device"
    )
    return NameConflict(f"{shown!r} is {kind} in the workspace, so it cannot be {wanted}")


def _replace(dir_fd: int, actual: str, name: str, fill: Callable[[BinaryIO], object]) -> os.stat_result:
    with contextlib.suppress(FileNotFoundError):
        mode = os.stat(actual, dir_fd=dir_fd, follow_symlinks=False).st_mode
        if not stat.S_ISREG(mode):
            raise _refusal(dir_fd, actual, name, "a file")
    tmp = TMP_PREFIX + secrets.token_hex(8)
    try:
        with os.fdopen(os.open(tmp, _NEW, 0o666, dir_fd=dir_fd), "wb") as fh:
            fill(fh)
            fh.flush()
            written = os.fstat(fh.fileno())
        # rename() replaces a file or a link itself, never what a link points to, and refuses
        # to put a file over a folder that appeared since the check above.
        os.rename(tmp, actual, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        if isinstance(exc, IsADirectoryError):
            raise _refusal(dir_fd, actual, name, "a file") from exc
        raise
    return written
