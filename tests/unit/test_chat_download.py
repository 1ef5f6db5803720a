"""controller/chat/download.py: one TLS context for every attachment download, and bodies
refused as soon as they pass the limit."""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import pytest

from controller.chat import download
from controller.chat.base import AttachmentError


def _count_bundle_loads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    loads: list[object] = []
    load = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(args or kwargs)
        load(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    return loads


async def test_a_download_client_loads_no_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = _count_bundle_loads(monkeypatch)
    async with download.client(), download.client():
        pass
    assert loads == []
    async with httpx.AsyncClient():  # the control: a client of its own loads the bundle
        pass
    assert len(loads) == 1


async def test_a_body_over_the_limit_is_refused_and_one_at_it_is_read() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"x" * 2048))
    async with httpx.AsyncClient(transport=transport) as client:
        async with client.stream("GET", "https://files.example/a.csv") as resp:
            assert await download.read(resp, 2048) == b"x" * 2048
        async with client.stream("GET", "https://files.example/a.csv") as resp:
            with pytest.raises(AttachmentError, match=r"over the 0\.0 MiB limit for one file"):
                await download.read(resp, 2047)
