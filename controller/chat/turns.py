"""The shared turn pipeline: which messages to take, once each, and running their turns.

A front-end's listener parses a delivery into an ``Incoming`` and calls ``take``, which
decides and claims quickly and runs the turn in an owned task, so the listener can ack
at once. Claims live in the thread store, so every replica sees them. If a turn fails
before the platform answered its first call, nothing has run: its claims are released so
that the platform's retry gets it done. Turns of one thread run in arrival order
(``SandboxManager.turn``); threads run concurrently.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Literal

from controller.agent.base import Agent, Turn
from controller.chat.attachments import take_in
from controller.chat.base import FrontEnd, Incoming, OriginT, ReplyT
from controller.chat.commands import Commands
from controller.chat.desk import Desk
from controller.chat.handoff import HandoffConfig
from controller.manager import SandboxManager
from controller.quotas import Quotas
from controller.stores.base import ThreadStore
from controller.streaming import detached
from controller.tasks import TaskSet
from controller.threadops import ThreadOps
from controller.threads import ThreadRecord, ensure_thread, get_thread
from controller.uploads import Uploads

if TYPE_CHECKING:
    from controller.runtime import Runtime

log = logging.getLogger(__name__)

DRAIN_SECONDS = 30.0
Outcome = Literal["ignored", "duplicate", "answered"]


@dataclass(frozen=True)
class Pipeline:
    """What turns need from the runtime, and no more (a unit test builds it from fakes)."""

    store: ThreadStore
    manager: SandboxManager
    agent: Agent
    quotas: Quotas
    max_code_bytes: int
    handoff: HandoffConfig = field(default_factory=HandoffConfig)
    keep_state: bool = True

    @classmethod
    def of(cls, rt: Runtime) -> Pipeline:
        s = rt.settings
        return cls(
            rt.store,
            rt.manager,
            rt.agent,
            rt.quotas,
            s.max_code_bytes,
            HandoffConfig.from_settings(s),
            s.keep_state,
        )

    @property
    def ops(self) -> ThreadOps:
        return ThreadOps(self.store, self.manager, self.quotas, self.keep_state)


class Conversations(Generic[OriginT, ReplyT]):
    def __init__(self, pipeline: Pipeline, front: FrontEnd[OriginT, ReplyT], name: str) -> None:
        self.p = pipeline
        self.front = front
        self.uploads = Uploads(pipeline.store, pipeline.manager, pipeline.quotas)
        self._tasks = TaskSet(name)
        self.desk = Desk(pipeline.store, pipeline.manager, pipeline.handoff, front, self._tasks)
        self.commands = Commands(pipeline.ops, front)

    def __len__(self) -> int:
        """Turns running now."""
        return len(self._tasks)

    async def take(self, msg: Incoming[OriginT] | None) -> Outcome:
        """Start answering ``msg`` unless it is not for the bot or another delivery has it."""
        if msg is None or not await self._wanted(msg):
            return "ignored"
        for key in msg.claims:
            if not await asyncio.to_thread(self.p.store.claim, key):
                return "duplicate"  # a retry or another delivery of this message; it is handled there
        self._tasks.spawn(self._answer(msg))
        return "answered"

    async def _wanted(self, msg: Incoming[OriginT]) -> bool:
        if not msg.only_if_active:
            return True
        # Active means the thread record exists: durable, so any replica and restarts agree.
        return await asyncio.to_thread(get_thread, self.p.store, msg.key.id) is not None

    async def drain(self, timeout: float = DRAIN_SECONDS) -> None:
        """Let running turns finish (they persist files) before the manager shuts down."""
        await self._tasks.drain(timeout)

    async def _answer(self, msg: Incoming[OriginT]) -> None:
        reply: ReplyT | None = None
        try:
            known = await asyncio.to_thread(get_thread, self.p.store, msg.key.id)
            if await self.commands.handle(msg, known):
                return  # forget state, fork, upgrade: the thread itself, whoever answers it
            record = known or await self._new_thread(msg)
            if await self.desk.intercept(msg, record):
                return  # handed off: a person answers, not the agent
            reply = self.front.reply(msg, record.id)
            await self._turn(msg, record, reply)
        except Exception as exc:
            log.exception("%s turn failed in %s", msg.key.source, msg.name)
            self.front.count_error("turn_failed")
            if reply is None or not reply.started:
                for key in msg.claims:
                    await asyncio.to_thread(self.p.store.release, key)
                return
            await self._apologize(reply, exc)

    async def _new_thread(self, msg: Incoming[OriginT]) -> ThreadRecord:
        return await asyncio.to_thread(ensure_thread, self.p.store, msg.key, msg.name, msg.user)

    async def _turn(self, msg: Incoming[OriginT], record: ThreadRecord, reply: ReplyT) -> None:
        await reply.start(self.p.manager.is_live(record.id))
        received = await take_in(self.uploads, record, msg.attachments)
        for problem in received.problems:
            reply.note(problem)
        limit = self.p.max_code_bytes
        if len(msg.text.encode()) > limit:
            reply.note(f"Your message is over the {limit}-byte limit, so I did not run it.")
            asked = None
        else:
            asked = await self._run(msg, Turn(record.id, msg.text, record.user, received.names), reply)
        await reply.finish()
        await self.front.finished(msg, record, reply)
        if asked is not None:  # the agent called ask_a_human
            await self.desk.hand_off(msg.origin, record, "agent", "the assistant", asked)

    async def _run(self, msg: Incoming[OriginT], turn: Turn, reply: ReplyT) -> str | None:
        """The agent's turn; the reason it gave if it asked for a person."""
        with self.desk.offering() as asked:
            async with self.front.running(msg, turn.thread_id):
                events = self.p.manager.turn(turn.thread_id, self.p.agent.respond(turn))
                async for event in detached(events, self.p.manager.turns):
                    await reply.show(event)
        return asked.reason

    async def _apologize(self, reply: ReplyT, exc: Exception) -> None:
        reply.note(f"Something went wrong on my side and this turn stopped: {exc}")
        try:
            await reply.finish()
        except Exception:
            log.exception("could not post the failure note either")
            self.front.count_error("api_call")
