"""Files a user attached to a Slack message: downloaded, then taken in by ``controller/uploads.py``.

Slack answers a download without a valid token or the ``files:read`` scope with
HTTP 200 and its HTML login page, so the body is checked before it is stored.
The bot token goes only to Slack hosts (and the configured API host): redirects
elsewhere are followed without it.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from controller.filenames import BadFilename, NameConflict
from controller.quotas import QuotaExceeded
from controller.threads import ThreadRecord
from controller.uploads import NotInSandbox, Uploads

MAX_REDIRECTS = 5
LOGIN_PAGE_HINT = (
    "Slack sent its sign-in page instead of the file, which means the bot lacks the `files:read` "
    "scope (or its token is wrong). Add `files:read` to the Slack app and reinstall it."
)


class AttachmentError(Exception):
    """The file could not be taken in; the message is meant for the user."""


@dataclass
class Received:
    names: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Downloader:
    token: str
    trusted_hosts: frozenset[str]
    limit: int

    def trusted(self, url: str) -> bool:
        host = urlsplit(url).hostname or ""
        return host in self.trusted_hosts or host == "slack.com" or host.endswith(".slack.com")

    async def fetch(self, url: str, expected_type: str) -> bytes:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=120)) as client:
            for _ in range(MAX_REDIRECTS + 1):
                headers = {"Authorization": f"Bearer {self.token}"} if self.trusted(url) else {}
                async with client.stream("GET", url, headers=headers) as resp:
                    if resp.is_redirect:
                        url = urljoin(url, resp.headers["location"])
                        continue
                    if resp.status_code != 200:
                        raise AttachmentError(f"Slack answered HTTP {resp.status_code} to the download")
                    data = await self._read(resp)
                if is_login_page(resp.headers.get("content-type", ""), data, expected_type):
                    raise AttachmentError(LOGIN_PAGE_HINT)
                return data
        raise AttachmentError("the download was redirected too many times")

    async def _read(self, resp: httpx.Response) -> bytes:
        data = bytearray()
        async for chunk in resp.aiter_bytes():
            data += chunk
            if self.limit and len(data) > self.limit:
                raise AttachmentError(f"it is over the {self.limit / 2**20:.1f} MiB limit for one file")
        return bytes(data)


def is_login_page(content_type: str, data: bytes, expected_type: str) -> bool:
    if expected_type.startswith("text/html"):
        return False  # the user really attached an HTML file
    head = data[:100].lstrip().lower()
    return content_type.startswith("text/html") or head.startswith((b"<!doctype", b"<html"))


@dataclass(frozen=True)
class Attachments:
    uploads: Uploads
    downloader: Downloader

    async def receive(self, record: ThreadRecord, files: list[dict[str, Any]]) -> Received:
        received = Received()
        for file in files:
            label = str(file.get("name") or file.get("id") or "a file")
            try:
                received.names.append(await self._receive_one(record, file))
            except (AttachmentError, BadFilename, NameConflict, QuotaExceeded) as exc:
                received.problems.append(f"I could not take `{label}`: {exc}")
            except NotInSandbox as exc:
                received.problems.append(f"{exc}.")
        return received

    async def _receive_one(self, record: ThreadRecord, file: dict[str, Any]) -> str:
        raw = str(file.get("name") or file.get("title") or file.get("id") or "")
        url = file.get("url_private_download") or file.get("url_private")
        if not url:
            raise AttachmentError("Slack did not give a download link for it")
        # Slack's declared size refuses a file over a quota before it is downloaded.
        name = await self.uploads.check(record, raw, int(file.get("size") or 0))
        data = await self.downloader.fetch(str(url), str(file.get("mimetype") or ""))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "upload"
            await asyncio.to_thread(path.write_bytes, data)
            await self.uploads.put(record, name, path)
        return name
