"""Filename sanitising for files that users upload or code creates.

A name is a relative POSIX path inside the thread's workspace. Traversal,
absolute paths, control characters and hidden metadata names are refused with
a clear message rather than silently rewritten, so a user never ends up with a
file under a name they did not choose. Unicode is kept (NFC-normalised).
"""

from __future__ import annotations

import unicodedata

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 1024
RESERVED_PREFIX = ".threadbox"


class BadFilename(ValueError):
    """The filename is unsafe; the message says why in plain words."""


def clean_filename(name: str) -> str:
    if not name or not name.strip():
        raise BadFilename("the filename is empty")
    name = unicodedata.normalize("NFC", name)
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise BadFilename("the filename contains control characters")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise BadFilename(f"absolute paths are not allowed: {name!r}")
    parts = name.replace("\\", "/").split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise BadFilename(f"path traversal or empty path segments are not allowed: {name!r}")
        if len(part.encode()) > MAX_NAME_BYTES:
            raise BadFilename(f"a path segment is longer than {MAX_NAME_BYTES} bytes")
    if parts[0].startswith(RESERVED_PREFIX):
        raise BadFilename(f"names starting with {RESERVED_PREFIX!r} are reserved")
    clean = "/".join(parts)
    if len(clean.encode()) > MAX_PATH_BYTES:
        raise BadFilename(f"the path is longer than {MAX_PATH_BYTES} bytes")
    return clean
