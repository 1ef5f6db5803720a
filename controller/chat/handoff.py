"""Operator handoff: which messages hand a thread to a person or give it back, and where the
handoff state lives. Pure decisions over a ``Handoff``, plus its blocking store calls (callers
wrap them in ``asyncio.to_thread``); ``controller/chat/desk.py`` acts on them.

The state is one small JSON record in the thread (``threads/<id>/handoff``), never memory: any
replica, and a restarted controller, continue a handoff. Each change writes the next
``version`` only after claiming that version in the store, so of two replicas that decided
from the same state, one moves it and the other re-reads (a conditional write on a store
that has only atomic claims). The operator destination's thread ("desk", as the front-end
names it) maps back to the user's thread under ``state/handoff/desks/<sha256>``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ValidationError

from controller.stores.base import ThreadStore
from controller.threads import ThreadRecord

if TYPE_CHECKING:
    from controller.config import Settings

log = logging.getLogger(__name__)

RECORD = "handoff"
# What a user or an operator types, alone in a message, case and end punctuation aside.
TO_HUMAN_COMMANDS = frozenset(
    {"human", "/human", "operator", "/operator", "talk to a person", "talk to a human"}
)
TO_BOT_COMMANDS = frozenset({"bot", "/bot"})
TO_HUMAN = "A person will answer here from now on."
TO_BOT = "The assistant is back."

Cause = Literal["user", "keyword", "agent", "operator", "timeout"]
Action = Literal["agent", "hand_off", "forward", "time_out"]
CAUSES: tuple[Cause, ...] = ("user", "keyword", "agent", "operator", "timeout")


@dataclass(frozen=True)
class HandoffConfig:
    timeout: float = 3600.0  # seconds without an operator's word before the assistant is back; 0: never
    keywords: tuple[str, ...] = ()  # lowercase words or phrases that hand a thread over
    history_budget: int = 8000  # the agent's history settings: handoffs are recorded in it
    history_ttl_days: float = 0.0

    @classmethod
    def from_settings(cls, s: Settings) -> HandoffConfig:
        return cls(s.handoff_timeout, tuple(s.handoff_keywords), s.history_token_budget, s.history_ttl_days)


class Handoff(BaseModel):
    """Who answers a thread now. ``last`` is when a person last spoke (or took it): the
    time-out counts from there. ``desk`` stays after the thread is given back, so a later
    handoff continues in the same operator thread."""

    human: bool = False
    version: int = 0
    since: float = 0.0
    last: float = 0.0
    cause: str = ""
    desk: str | None = None

    def to_human(self, cause: Cause, now: float, desk: str) -> Handoff:
        return Handoff(human=True, version=self.version + 1, since=now, last=now, cause=cause, desk=desk)

    def to_bot(self, cause: Cause, now: float) -> Handoff:
        return Handoff(version=self.version + 1, since=now, last=now, cause=cause, desk=self.desk)

    def touched(self, now: float) -> Handoff:
        return self.model_copy(update={"version": self.version + 1, "last": now})


def normal(text: str) -> str:
    """A message as its commands are matched (controller/chat/commands.py too)."""
    return " ".join(text.lower().strip().rstrip(".!?").split())


def command(text: str) -> Literal["human", "bot"] | None:
    said = normal(text)
    if said in TO_HUMAN_COMMANDS:
        return "human"
    return "bot" if said in TO_BOT_COMMANDS else None


def keyword(text: str, keywords: Sequence[str]) -> str | None:
    """The first keyword said as whole words (so "refund" is not found in "refunded")."""
    said = normal(text)
    return next((k for k in keywords if re.search(rf"(?<!\w){re.escape(k)}(?!\w)", said)), None)


def expired(h: Handoff, timeout: float, now: float) -> bool:
    return h.human and timeout > 0 and now - h.last >= timeout


def decide(h: Handoff, text: str, config: HandoffConfig, now: float) -> tuple[Action, Cause | None]:
    """What a user's message does: run the agent, hand the thread over (and why), go to the
    operator, or find the operator gone quiet past the time-out (back to the agent)."""
    if h.human:
        return ("time_out", "timeout") if expired(h, config.timeout, now) else ("forward", None)
    if command(text) == "human":
        return "hand_off", "user"
    if keyword(text, config.keywords):
        return "hand_off", "keyword"
    return "agent", None


# -- the store (blocking) ---------------------------------------------------------------------


def load(store: ThreadStore, thread_id: str) -> Handoff:
    raw = store.get_json(thread_id, RECORD)
    try:
        return Handoff.model_validate(raw) if raw is not None else Handoff()
    except ValidationError as exc:
        log.warning("unreadable handoff state of thread %s, taken as none: %s", thread_id, exc)
        return Handoff()


def save(store: ThreadStore, record: ThreadRecord, new: Handoff) -> bool:
    """Write ``new`` unless another writer already wrote its version; True if written. The
    claim names the thread's creation too: a thread deleted and made again starts afresh."""
    claim = f"handoff-version/{record.id}/{record.created}/{new.version}"
    if not store.claim(claim):
        return False
    try:
        store.put_json(record.id, RECORD, new.model_dump())
    except Exception:
        store.release(claim)  # nothing was written: the version stays free
        raise
    return True


def desk_key(platform: str, desk: str) -> str:
    return "handoff/desks/" + hashlib.sha256(f"{platform}\0{desk}".encode()).hexdigest()


def link_desk(store: ThreadStore, platform: str, desk: str, thread_id: str) -> None:
    store.put_state(desk_key(platform, desk), {"thread": thread_id})


def thread_of_desk(store: ThreadStore, platform: str, desk: str) -> str | None:
    found = store.get_state(desk_key(platform, desk))
    return str(found["thread"]) if isinstance(found, dict) and "thread" in found else None
