"""The one way a user's file gets into a thread (API upload and Slack attachment alike).

Clean the name, check the quotas and that the name collides with no stored file
or folder, store it, then put it into the live sandbox if there is one. Each
refusal is an exception whose message is meant for the user, and leaves the
store as it was.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from controller.filenames import NameConflict, clean_filename, collision
from controller.k8s.podserver import PodServerError
from controller.manager import SandboxManager
from controller.quotas import Quotas, check_upload
from controller.stores.base import StoredFile, ThreadStore
from controller.threads import ThreadRecord
from controller.workspace import sha256_file


class NotInSandbox(Exception):
    """The file is stored, but the live sandbox did not take it; the message says both."""


@dataclass(frozen=True)
class Uploads:
    store: ThreadStore
    manager: SandboxManager
    quotas: Quotas

    async def check(self, record: ThreadRecord, raw_name: str, size: int) -> str:
        """The clean name, if a file of ``size`` bytes may be stored under it; raises
        BadFilename, QuotaExceeded or NameConflict otherwise."""
        name = clean_filename(raw_name)
        await asyncio.to_thread(self._admit, record, name, size)
        return name

    def _admit(self, record: ThreadRecord, name: str, size: int) -> None:
        reason = collision(name, (f.name for f in self.store.list_files(record.id)))
        if reason:
            raise NameConflict(reason)
        check_upload(self.store, self.quotas, record.id, record.user, name, size)

    async def put(self, record: ThreadRecord, raw_name: str, source: Path) -> StoredFile:
        """Store ``source`` as ``raw_name`` (cleaned) and copy it into the live sandbox."""
        size = (await asyncio.to_thread(source.stat)).st_size
        name = await self.check(record, raw_name, size)
        sha = await asyncio.to_thread(sha256_file, source)
        stored: StoredFile = await asyncio.to_thread(self.store.put_file, record.id, name, source, sha)
        if self.manager.is_live(record.id):
            data = await asyncio.to_thread(source.read_bytes)
            try:
                await self.manager.write_file(record.id, name, data)
            except NameConflict:
                # A link or a folder that code made since the last persist is in the way. The
                # next persist would drop the stored entry anyway (the workspace holds no such
                # file), so dropping it now leaves the store as the workspace has it.
                await asyncio.to_thread(self.store.delete_file, record.id, name)
                raise
            except PodServerError as exc:
                # Not a store outage: the file is stored, and the sandbox's next start restores it.
                raise NotInSandbox(
                    f"{name} is stored in the thread's files, but the running sandbox did not take it "
                    f"({exc.detail or 'its file server did not answer'}); it will be in the sandbox "
                    "from its next start"
                ) from exc
        return stored
