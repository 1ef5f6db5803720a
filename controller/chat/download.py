"""Downloading a chat attachment over HTTP: the Slack and Discord front-ends fetch from URLs a
message gave; Telegram's library downloads on its own, and shares only the size limit.

Every download uses one TLS context, made at import. httpx loads the CA bundle for each client
made without one: about 20 ms of CPU on the event loop per attachment, far more on a busy one.
"""

from __future__ import annotations

import httpx

from controller.chat.base import AttachmentError

TLS = httpx.create_ssl_context()
TIMEOUT = httpx.Timeout(30, read=120)


def client() -> httpx.AsyncClient:
    """A client for one download's requests (redirects are the caller's to follow)."""
    return httpx.AsyncClient(timeout=TIMEOUT, verify=TLS)


def within(size: int, limit: int) -> None:
    """Refuses a file of ``size`` bytes over ``limit`` (0: no limit)."""
    if limit and size > limit:
        raise AttachmentError(f"it is over the {limit / 2**20:.1f} MiB limit for one file")


async def read(resp: httpx.Response, limit: int) -> bytes:
    """The body, refused as soon as it passes ``limit``: a lying Content-Length costs nothing."""
    data = bytearray()
    async for chunk in resp.aiter_bytes():
        data += chunk
        within(len(data), limit)
    return bytes(data)
