"""An in-tree front-end for tests: messages go in as ``Incoming``, and each turn's output is
recorded as (kind, value) pairs, in order, per thread."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from controller.chat.base import AttachmentError, FrontEnd, Incoming
from controller.events import Event
from controller.identity import ThreadKey


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

    def __init__(self) -> None:
        self.shown: dict[str, list[tuple[str, object]]] = defaultdict(list)
        self.errors: list[str] = []
        self.fail_start = False

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

    def reply(self, msg: Incoming[str], thread_id: str) -> FakeReply:
        return FakeReply(self.shown[msg.origin], self.fail_start)

    def count_error(self, kind: str) -> None:
        self.errors.append(kind)
