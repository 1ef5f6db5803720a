"""Free loopback ports for servers started by tests and benchmarks."""

from __future__ import annotations

import socket
from collections.abc import Iterable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (another process may still take it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_address(port: int, candidates: Iterable[str]) -> str | None:
    """The first of ``candidates`` (loopback addresses) where ``port`` was free a moment ago,
    for a server whose port is fixed, such as the in-pod server's."""
    for ip in candidates:
        with socket.socket() as probe:
            try:
                probe.bind((ip, port))
            except OSError:
                continue
        return ip
    return None
