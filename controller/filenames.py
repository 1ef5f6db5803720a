"""File names: what users upload and what code creates in a workspace.

A name is a relative POSIX path inside the thread's workspace. Traversal, empty
segments, control characters and names under the reserved ``.threadbox`` prefix
are refused with a clear message rather than silently rewritten, so a user never
ends up with a file under a name they did not choose.

The one rule for every name, whoever made it: **``/`` is the only separator and
a name is its NFC form.** A backslash and a colon are ordinary characters
(``a\\b.txt`` and ``a:b.txt`` are single file names, as on POSIX). Uploads,
listings, downloads and what persist stores all use the NFC name, so a file
that code created in decomposed Unicode (``cafe\\u0301.txt``) is listed and
downloaded as ``café.txt``, and an upload of ``café.txt`` replaces it instead of
becoming a second entry. A restored workspace holds NFC names, and persist maps
a workspace name to its NFC form before comparing, so a persist → restore →
persist cycle uploads nothing again.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 1024
RESERVED_PREFIX = ".threadbox"


class BadFilename(ValueError):
    """The filename is unsafe; the message says why in plain words."""


class NameConflict(Exception):
    """The name is taken by a folder, a file or a link where the other is needed; nothing was written."""


def clean_filename(name: str) -> str:
    if not name or not name.strip():
        raise BadFilename("the filename is empty")
    name = unicodedata.normalize("NFC", name)
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise BadFilename("the filename contains control characters")
    if name.startswith("/"):
        raise BadFilename(f"absolute paths are not allowed: {name!r}")
    parts = name.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise BadFilename(f"path traversal or empty path segments are not allowed: {name!r}")
        if len(part.encode()) > MAX_NAME_BYTES:
            raise BadFilename(f"a path segment is longer than {MAX_NAME_BYTES} bytes")
    if parts[0].startswith(RESERVED_PREFIX):
        raise BadFilename(f"names starting with {RESERVED_PREFIX!r} are reserved")
    if len(name.encode()) > MAX_PATH_BYTES:
        raise BadFilename(f"the path is longer than {MAX_PATH_BYTES} bytes")
    return name


def collision(name: str, existing: Iterable[str]) -> str | None:
    """Why ``name`` cannot sit beside the clean names ``existing``, or None if it can.

    A file cannot have the name of a folder that holds other files, nor be inside a
    folder whose name is taken by a file.
    """
    folders = {"/".join(name.split("/")[:i]) for i in range(1, name.count("/") + 1)}
    for other in existing:
        if other.startswith(name + "/"):
            return f"{name!r} is a folder in this thread (it holds {other!r})"
        if other in folders:
            return f"{other!r} is a file in this thread, so it cannot be a folder of {name!r}"
    return None
