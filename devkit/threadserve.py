"""What the stand-ins share: an HTTP server on a free port, in a daemon thread, for the length
of a ``with``; and waiting for what a test expects them to have seen."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

T = TypeVar("T")


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler still waiting (a long poll) does not hold up the end

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up first (a cancelled long poll) is no error of the stand-in's."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class StandInHandler(BaseHTTPRequestHandler):
    """A stand-in's request handler: no access log, and one way to answer."""

    def log_message(self, *_: Any) -> None:
        pass

    def _reply(self, status: int, ctype: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``handler`` on ``host``; yields the base URL, ``http://host:port`` (no "/")."""
    server = _Server((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def poll(check: Callable[[], T | None], timeout: float, what: str, seen: Callable[[], object]) -> T:
    """Poll ``check`` until it returns something truthy: the controller acts after its answer to
    the request, and the stand-in has no signal for "done". ``seen`` goes into the failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; calls: {seen()}")
