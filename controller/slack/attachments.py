"""Files a user attached to a Slack message, as the chat seam's ``Attachment``s: the shared
pipeline (controller/chat/attachments.py) checks them and takes them in through
``controller/uploads.py``; this module downloads them.

Slack answers a download without a valid token or the ``files:read`` scope with
HTTP 200 and its HTML login page, so the body is checked before it is stored.
The bot token goes only to Slack hosts (and the configured API host): redirects
elsewhere are followed without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from controller.chat import download
from controller.chat.base import AttachmentError

MAX_REDIRECTS = 5
LOGIN_PAGE_HINT = (
    "Slack sent its sign-in page instead of the file, which means the bot lacks the `files:read` "
    "scope (or its token is wrong). Add `files:read` to the Slack app and reinstall it."
)


@dataclass(frozen=True)
class Downloader:
    token: str
    trusted_hosts: frozenset[str]
    limit: int

    def trusted(self, url: str) -> bool:
        host = urlsplit(url).hostname or ""
        return host in self.trusted_hosts or host == "slack.com" or host.endswith(".slack.com")

    async def fetch(self, url: str, expected_type: str) -> bytes:
        async with download.client() as client:
            for _ in range(MAX_REDIRECTS + 1):
                headers = {"Authorization": f"Bearer {self.token}"} if self.trusted(url) else {}
                async with client.stream("GET", url, headers=headers) as resp:
                    if resp.is_redirect:
                        url = urljoin(url, resp.headers["location"])
                        continue
                    if resp.status_code != 200:
                        raise AttachmentError(f"Slack answered HTTP {resp.status_code} to the download")
                    data = await download.read(resp, self.limit)
                if is_login_page(resp.headers.get("content-type", ""), data, expected_type):
                    raise AttachmentError(LOGIN_PAGE_HINT)
                return data
        raise AttachmentError("the download was redirected too many times")


def is_login_page(content_type: str, data: bytes, expected_type: str) -> bool:
    if expected_type.startswith("text/html"):
        return False  # the user really attached an HTML file
    head = data[:100].lstrip().lower()
    return content_type.startswith("text/html") or head.startswith((b"<!doctype", b"<html"))


@dataclass(frozen=True)
class SlackFile:
    """One entry of a message event's ``files``."""

    file: dict[str, Any]
    downloader: Downloader

    @property
    def label(self) -> str:
        return str(self.file.get("name") or self.file.get("id") or "a file")

    @property
    def name(self) -> str:
        return str(self.file.get("name") or self.file.get("title") or self.file.get("id") or "")

    @property
    def size(self) -> int:
        return int(self.file.get("size") or 0)

    async def fetch(self) -> bytes:
        url = self.file.get("url_private_download") or self.file.get("url_private")
        if not url:
            raise AttachmentError("Slack did not give a download link for it")
        return await self.downloader.fetch(str(url), str(self.file.get("mimetype") or ""))
