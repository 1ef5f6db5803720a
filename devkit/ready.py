"""Waiting for a server started as a child process to answer."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx


def wait_answering(name: str, url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Return once ``url`` answers 200; raise with the tail of ``log`` if ``proc`` exits first
    or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # polling a process that gives no other signal of readiness
    raise RuntimeError(f"{name} did not answer {url} in {timeout:g}s:\n{log.read_text()[-3000:]}")
