"""The front-end interfaces: what a chat platform hands the shared turn pipeline, and what
the pipeline asks of it. See the package docstring for the contract."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from controller.events import Event
from controller.identity import ThreadKey

if TYPE_CHECKING:
    from controller.threads import ThreadRecord


class AttachmentError(Exception):
    """An attached file could not be fetched; the message is meant for the user."""


class CannotOpen(Exception):
    """The front-end cannot open a new thread from here; the message is meant for the user."""


@dataclass(frozen=True)
class Opened:
    """A thread a front-end opened: its key, and how a user finds it (a link, else a name)."""

    key: ThreadKey
    where: str


class Attachment(Protocol):
    """A file on a user's message, not yet downloaded."""

    @property
    def label(self) -> str:
        """How the user knows it (its name, else the platform's id), for notes about it."""

    @property
    def name(self) -> str:
        """The name to store it under, raw: the upload pipeline cleans it."""

    @property
    def size(self) -> int:
        """The size the platform declared (0: unknown), checked against quotas before download."""

    async def fetch(self) -> bytes:
        """Its bytes; raises AttachmentError (over the front-end's size limit, refused...)."""


# What the front-end keeps with a message to reply to it (Slack: the event's client).
OriginT = TypeVar("OriginT")


@dataclass(frozen=True)
class Incoming(Generic[OriginT]):
    """A user's message that asks for a turn, as the front-end parsed it.

    ``claims`` are store claims (``store.claim``), all taken before the turn runs: the first
    delivery of a message takes them, retries and second deliveries find them taken.
    ``message`` is the platform's id of this message (a Slack ts, a Telegram message id).
    """

    key: ThreadKey
    user: str
    text: str
    message: str
    claims: tuple[str, ...]
    name: str  # the thread record's name, if this message creates the thread
    origin: OriginT
    attachments: Sequence[Attachment] = field(default_factory=tuple)
    # True: answered only in a thread that already has a record (a reply the bot was not asked)
    only_if_active: bool = False


@dataclass(frozen=True)
class OperatorMessage(Generic[OriginT]):
    """An operator's message in the operator destination's thread ``desk`` (the name
    ``FrontEnd.to_operator`` gave it): it goes to the user's thread handed over there."""

    desk: str
    user: str
    text: str
    claims: tuple[str, ...]
    origin: OriginT


class Reply(Protocol):
    """One turn's output in the platform's thread. Slack's SlackReply is the model."""

    @property
    def started(self) -> bool:
        """The platform answered the turn's first call (``start``); before that nothing ran,
        so a failure releases the claims and the platform's retry gets the turn."""

    async def start(self, sandbox_live: bool) -> None:
        """The first word in the thread: a status saying the sandbox is starting (or working)."""

    def note(self, text: str) -> None:
        """A sentence for the user (a refused file, a limit), shown in order with the rest."""

    async def show(self, event: Event) -> None:
        """One event of the turn: status, code, output, images, files, errors, agent text."""

    async def finish(self) -> None:
        """Send what is left; the turn is over."""


ReplyT = TypeVar("ReplyT", bound=Reply)


class FrontEnd(Generic[OriginT, ReplyT]):
    """A chat platform, as the pipeline sees it. Only ``reply`` is required; the other hooks
    default to nothing, so a new front-end starts with one method."""

    def reply(self, msg: Incoming[OriginT], thread_id: str) -> ReplyT:
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def running(self, msg: Incoming[OriginT], thread_id: str) -> AsyncIterator[None]:
        """Around the agent's turn (Slack watches for its Stop button here)."""
        yield

    async def finished(self, msg: Incoming[OriginT], record: ThreadRecord, reply: ReplyT) -> None:
        """After ``reply.finish``: keep what the platform needs of the turn (blocking work via
        ``asyncio.to_thread``)."""

    def count_error(self, kind: str) -> None:
        """A failure to count: ``turn_failed`` (the turn stopped), ``api_call`` (the
        platform refused a call, even the apology)."""

    async def open_thread(self, origin: OriginT, beside: ThreadRecord, text: str) -> Opened:
        """Open a new thread where ``beside``'s is (its channel, its chat), with ``text`` as its
        first message, for a fork (controller/chat/commands.py). Raises CannotOpen where the
        platform has no such place (a Discord DM); the default: no front-end opens threads."""
        raise CannotOpen("threadbox cannot open a new thread on this platform, so it cannot fork one here")

    # -- operator handoff (controller/chat/desk.py): without a destination, a front-end has none

    operator_destination: str | None = None  # where handed-off threads go (a Slack channel...)

    async def to_operator(self, origin: OriginT, desk: str | None, text: str) -> str:
        """Post ``text`` in the operator destination: in its thread ``desk``, or a new thread when
        None. Returns the thread's name, which operator replies carry (``OperatorMessage.desk``)."""
        raise NotImplementedError

    async def to_user(self, origin: OriginT, record: ThreadRecord, text: str) -> None:
        """Post ``text`` in the user's thread of ``record``: a notice, or an operator's words."""
        raise NotImplementedError

    def reply_in(self, origin: OriginT, record: ThreadRecord) -> ReplyT:
        """A reply in the user's thread of ``record``, for code an operator runs there."""
        raise NotImplementedError
