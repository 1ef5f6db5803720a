"""An in-tree front-end for tests: messages go in as ``Incoming``, and each turn's output is
recorded as (kind, value) pairs, in order, per thread. With an operator destination
(``FakeFrontEnd(operators="ops")``) it has handoff: what it posts there is recorded per
operator thread ("desk") in ``desks``, and its posts in a user's thread as ("said", text).
It opens threads (for forks) named ``<thread>-fork-<n>``, unless ``opens`` is False."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from controller.chat.base import AttachmentError, CannotOpen, FrontEnd, Incoming, Opened, OperatorMessage
from controller.events import Event
from controller.identity import ThreadKey
from controller.threads import ThreadRecord


@dataclass(frozen=True)
class FakeFile:
    name: str
    data: bytes
    declared: int | None = None  # the size the platform claims, if not the real one

    @property
    def label(self) -> str:
        return self.name

    @property
    def size(self) -> int:
        return len(self.data) if self.declared is None else self.declared

    async def fetch(self) -> bytes:
        if not self.data:
            raise AttachmentError("the platform lost it")
        return self.data


class FakeReply:
    def __init__(self, shown: list[tuple[str, object]], fail_start: bool) -> None:
        self.shown = shown
        self.fail_start = fail_start
        self.started = False

    async def start(self, sandbox_live: bool) -> None:
        if self.fail_start:
            raise ConnectionError("the platform is down")
        self.started = True
        self.shown.append(("start", sandbox_live))

    def note(self, text: str) -> None:
        self.shown.append(("note", text))

    async def show(self, event: Event) -> None:
        self.shown.append((type(event).__name__, event))

    async def finish(self) -> None:
        self.shown.append(("finish", None))


class FakeFrontEnd(FrontEnd[str, FakeReply]):
    """``origin`` is the thread's name; ``fail_start`` makes the platform refuse first calls."""

    def __init__(self, operators: str | None = None) -> None:
        self.shown: dict[str, list[tuple[str, object]]] = defaultdict(list)
        self.errors: list[str] = []
        self.fail_start = False
        self.operator_destination = operators
        self.desks: dict[str, list[str]] = defaultdict(list)
        self.opens = True

    def message(self, thread: str, text: str, message: str, *files: FakeFile) -> Incoming[str]:
        return Incoming(
            key=ThreadKey("fake", "w", "c", thread),
            user="alice",
            text=text,
            message=message,
            claims=(f"fake-message/{thread}/{message}",),
            name=thread,
            origin=thread,
            attachments=files,
        )

    def operator(self, desk: str, text: str, message: str) -> OperatorMessage[str]:
        return OperatorMessage(desk, "olga", text, (f"fake-operator/{desk}/{message}",), desk)

    def reply(self, msg: Incoming[str], thread_id: str) -> FakeReply:
        return FakeReply(self.shown[msg.origin], self.fail_start)

    def count_error(self, kind: str) -> None:
        self.errors.append(kind)

    async def to_operator(self, origin: str, desk: str | None, text: str) -> str:
        desk = desk or f"desk-{len(self.desks) + 1}"
        self.desks[desk].append(text)
        return desk

    async def to_user(self, origin: str, record: ThreadRecord, text: str) -> None:
        self.shown[record.thread].append(("said", text))

    async def open_thread(self, origin: str, beside: ThreadRecord, text: str) -> Opened:
        if not self.opens:
            raise CannotOpen("this place has no threads")
        thread = f"{beside.thread}-fork-{sum(t.startswith(beside.thread + '-fork-') for t in self.shown) + 1}"
        self.shown[thread].append(("said", text))
        return Opened(ThreadKey("fake", "w", "c", thread), thread)

    def reply_in(self, origin: str, record: ThreadRecord) -> FakeReply:
        return FakeReply(self.shown[record.name], self.fail_start)
