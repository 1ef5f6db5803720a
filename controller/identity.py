"""Thread identity: (source, workspace, channel, thread) -> a short stable id.

The id is used as a Kubernetes label value, an object-name suffix (DNS-1123)
and an S3 prefix, so it is lowercase ``[a-z0-9-]`` only, at most 32 characters,
and starts and ends with an alphanumeric. Collisions are made negligible by
hashing the full key rather than truncating it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

_SLUG = re.compile(r"[^a-z0-9]+")
THREAD_ID = re.compile(r"^[a-z0-9]{1,8}-[a-z2-7]{16}$")


@dataclass(frozen=True)
class ThreadKey:
    source: str
    workspace: str
    channel: str
    thread: str

    @property
    def id(self) -> str:
        return thread_id(self)


def thread_id(key: ThreadKey) -> str:
    # NUL cannot occur in Slack ids, so joining on it keeps distinct keys distinct.
    raw = "\0".join((key.source, key.workspace, key.channel, key.thread)).encode()
    digest = base64.b32encode(hashlib.sha256(raw).digest()).decode().lower()[:16]
    slug = _SLUG.sub("", key.source.lower())[:8] or "t"
    return f"{slug}-{digest}"


def is_thread_id(value: str) -> bool:
    return bool(THREAD_ID.match(value))
