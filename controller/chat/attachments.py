"""Files on a user's message, taken in through the one upload pipeline (controller/uploads.py).

The declared size is checked against the limits and quotas before a byte is downloaded;
each refusal becomes a sentence for the user, and leaves the store as it was.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controller.chat.base import Attachment, AttachmentError
from controller.filenames import BadFilename, NameConflict
from controller.quotas import QuotaExceeded
from controller.threads import ThreadRecord
from controller.uploads import NotInSandbox, Uploads


@dataclass
class Received:
    names: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


async def take_in(uploads: Uploads, record: ThreadRecord, files: Sequence[Attachment]) -> Received:
    received = Received()
    for file in files:
        try:
            received.names.append(await _take_one(uploads, record, file))
        except (AttachmentError, BadFilename, NameConflict, QuotaExceeded) as exc:
            received.problems.append(f"I could not take `{file.label}`: {exc}")
        except NotInSandbox as exc:
            received.problems.append(f"{exc}.")
    return received


async def _take_one(uploads: Uploads, record: ThreadRecord, file: Attachment) -> str:
    name = await uploads.check(record, file.name, file.size)
    data = await file.fetch()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload"
        await asyncio.to_thread(path.write_bytes, data)
        await uploads.put(record, name, path)
    return name
