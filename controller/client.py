"""The client commands of ``threadbox`` (run, upload, threads): HTTP calls to a running server."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote

import httpx

from controller.auth_setup import client_token
from controller.events import Display, Done, Error, Event, FilesChanged, Message, Status, Stream
from controller.streaming import Keepalive, StreamEvent

# Exit codes, shown by `threadbox --help` and in the README.
OK, FAILED, USAGE, UNREACHABLE, REFUSED, SERVER_FAILED = 0, 1, 2, 3, 4, 5
EXIT_CODES = """\
exit codes:
  0    done (for run: the code ran without an error)
  1    the code raised, timed out or was stopped; or a local command failed
  2    bad usage or configuration
  3    the server cannot be reached
  4    the server refused the request (4xx: token, unknown or ambiguous thread, a limit)
  5    the server failed (5xx: e.g. storage unavailable)
  130  interrupted (Ctrl-C)
"""


def run_client(args: argparse.Namespace) -> int:
    token = client_token(args.token, args.server)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=args.server, headers=headers, timeout=httpx.Timeout(10, read=None)) as http:
        if args.command == "threads":
            return _threads(http, args.json)
        thread = _thread(http, args.thread)
        if args.command == "upload":
            return _upload(http, args, thread)
        code = args.file.read_text() if args.file else args.code
        if not code:
            print("threadbox run: give code as an argument or a file with -f", file=sys.stderr)
            return USAGE
        body = {"code": code, "timeout": args.timeout}
        with http.stream("POST", f"/threads/{thread['id']}/execute", json=body) as resp:
            _ok(resp, stream=True)
            events = _events(resp.iter_lines())
            return _print_json(events) if args.json else _print_stream(events)


def _thread(http: httpx.Client, ref: str) -> dict[str, Any]:
    """The thread ``ref`` names (an id, or the name of one of the caller's threads); a name
    that names none is created."""
    found = http.get(f"/threads/{quote(ref, safe='')}")
    if found.status_code == 404:
        found = http.post("/threads", json={"name": ref})
    return dict(_ok(found).json())


def _threads(http: httpx.Client, as_json: bool) -> int:
    every: list[dict[str, Any]] = []
    page = _ok(http.get("/threads"))
    every += page.json()
    while "next" in page.links:
        page = _ok(http.get(page.links["next"]["url"]))
        every += page.json()
    if as_json:
        print(json.dumps(every, indent=2))
        return OK
    for t in every:
        print(f"{t['id']}  {'live' if t['live'] else 'idle':4}  {t['name']}")
    return OK


def _upload(http: httpx.Client, args: argparse.Namespace, thread: dict[str, Any]) -> int:
    with args.path.open("rb") as fh:
        files = {"file": (args.name or args.path.name, fh)}
        stored = _ok(http.post(f"/threads/{thread['id']}/files", files=files)).json()
    if args.json:
        print(json.dumps(stored))
    else:
        print(f"uploaded {stored['name']} ({stored['size']} bytes) to thread {thread['name']}")
    return OK


def _ok(resp: httpx.Response, stream: bool = False) -> httpx.Response:
    """``resp`` if it succeeded; else says what the server said and exits 4 (refused) or 5."""
    if resp.is_success:
        return resp
    if stream:
        resp.read()
    try:
        detail = resp.json().get("detail", resp.text)
    except json.JSONDecodeError:
        detail = resp.text
    print(f"threadbox: server said {resp.status_code}: {detail}", file=sys.stderr)
    raise SystemExit(REFUSED if resp.status_code < 500 else SERVER_FAILED)


def _events(lines: Iterable[str]) -> Iterator[Event]:
    """The turn's events; keepalives, which only keep the connection open, are skipped."""
    for line in lines:
        item = StreamEvent.model_validate_json(line).root if line else None
        if item is not None and not isinstance(item, Keepalive):
            yield item


def _exit(done: Done | None) -> int:
    return OK if done is not None and done.status == "ok" else FAILED


def _print_json(events: Iterable[Event]) -> int:
    done = None
    for event in events:
        print(event.model_dump_json(), flush=True)
        done = event if isinstance(event, Done) else done
    return _exit(done)


def _print_stream(events: Iterable[Event]) -> int:
    done = None
    for event in events:
        if isinstance(event, Stream):
            (sys.stdout if event.type == "stdout" else sys.stderr).write(event.text)
        elif isinstance(event, Display):
            text = event.data.get("text/plain", "")
            extra = [m for m in event.data if m != "text/plain"]
            print(text + (f"  [{', '.join(extra)}]" if extra else ""))
        elif isinstance(event, Error):
            print("\n".join(event.traceback) or f"{event.ename}: {event.evalue}", file=sys.stderr)
        elif isinstance(event, (Status, Message)):
            print(
                f"[{event.phase}] {event.message}" if isinstance(event, Status) else event.text,
                file=sys.stderr,
            )
        elif isinstance(event, FilesChanged):
            for name in event.changed:
                print(f"[saved] {name}", file=sys.stderr)
            for name, why in event.refused.items():
                print(f"[not saved] {name}: {why}", file=sys.stderr)
        elif isinstance(event, Done):
            done = event
        sys.stdout.flush()
    return _exit(done)
