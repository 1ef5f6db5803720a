"""Operator handoff in motion: a handed-off thread's messages go to the operator destination,
the operator's come back, and the agent stays silent meanwhile (``controller/chat/handoff.py``
decides; this module posts, writes and counts).

The turn pipeline asks ``intercept`` before it runs the agent, and offers the agent its
``ask_a_human`` tool through ``offering``. A front-end's listener hands operator messages to
``take``. Each handoff is shown to the user, counted (``threadbox_handoffs_total``) and kept
in the thread's history, so the agent knows what happened when it is back. Code blocks in an
operator's message run in the user's thread sandbox, in the thread's turn order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic

from controller.agent import ask_human
from controller.agent.base import Turn
from controller.agent.builtin import HISTORY_KEY
from controller.agent.direct import DirectAgent, code_blocks
from controller.agent.history import Exchange, History
from controller.chat import handoff
from controller.chat.base import FrontEnd, Incoming, OperatorMessage, OriginT, ReplyT
from controller.chat.handoff import TO_BOT, TO_HUMAN, Cause, Handoff, HandoffConfig
from controller.chat.transcript import Transcript
from controller.events import Code, Error, Event, Stream
from controller.manager import SandboxManager
from controller.stores.base import ThreadStore
from controller.streaming import detached
from controller.tasks import TaskSet
from controller.threads import ThreadRecord, get_thread

log = logging.getLogger(__name__)

BUSY_ATTEMPTS = 3  # re-reads when another replica moved the state first
NOT_HANDED = "The assistant has this thread now, so this was not sent. Say `human` here to take it over."


def opening(record: ThreadRecord, cause: Cause, who: str, text: str) -> str:
    """The operator's first message about a thread."""
    why = {"user": "asked for a person", "keyword": "said a handoff keyword", "agent": "the assistant asked"}
    lines = [
        f"Thread “{record.name}” ({record.source}, started by {record.user}) is yours: "
        f"{why.get(cause, cause)}.",
        "Reply in this thread to answer; code blocks run in the user's sandbox; `/bot` gives it back.",
    ]
    return "\n".join([*lines, f"{who}: {text}" if text else ""]).strip()


class Desk(Generic[OriginT, ReplyT]):
    def __init__(
        self,
        store: ThreadStore,
        manager: SandboxManager,
        config: HandoffConfig,
        front: FrontEnd[OriginT, ReplyT],
        tasks: TaskSet,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.manager, self.config, self.front = store, manager, config, front
        self.tasks = tasks
        self.clock = clock
        self.history = History(store, HISTORY_KEY, config.history_budget, config.history_ttl_days)
        self.metrics = manager.metrics

    @property
    def on(self) -> bool:
        return self.front.operator_destination is not None

    # -- the user's side: called by the turn pipeline ----------------------------------------

    async def intercept(self, msg: Incoming[OriginT], record: ThreadRecord) -> bool:
        """Before the agent: True when this message is handled here (handed over, or forwarded)."""
        if not self.on:
            return False
        h = await self._load(record.id)
        action, cause = handoff.decide(h, msg.text, self.config, self.clock())
        if action == "forward":
            await self._forward(msg, record, h)
            return True
        if action == "time_out":
            await self._give_back(msg.origin, record, h, "timeout")
        elif action == "hand_off" and cause is not None:
            handed = await self.hand_off(msg.origin, record, cause, msg.user, msg.text)
            return handed or cause == "user"  # a keyword that could not reach a person still asks the agent
        return False

    @contextlib.contextmanager
    def offering(self) -> Iterator[ask_human.HumanAsked]:
        """Around the agent's turn: the agent may call ``ask_a_human`` where a person can answer."""
        asked = ask_human.HumanAsked()
        token = ask_human.ASK.set(asked if self.on else None)
        try:
            yield asked
        finally:
            ask_human.ASK.reset(token)

    async def hand_off(
        self, origin: OriginT, record: ThreadRecord, cause: Cause, who: str, text: str
    ) -> bool:
        """Open (or continue) the operator thread, then move the state: True if handed over."""
        h = await self._load(record.id)
        try:
            desk = await self.front.to_operator(origin, h.desk, opening(record, cause, who, text))
        except Exception as exc:
            log.warning("could not reach the operator destination for thread %s: %s", record.id, exc)
            self.front.count_error("api_call")
            await self.front.to_user(
                origin, record, "I could not reach a person just now; please try again later."
            )
            return False
        await asyncio.to_thread(handoff.link_desk, self.store, self._where, desk, record.id)
        if not await self._move(
            record, lambda old: old.to_human(cause, self.clock(), desk) if not old.human else None
        ):
            return True  # another replica handed it over meanwhile
        await self._noted(
            record, "human", cause, [{"role": "user", "content": text}] if text else [], TO_HUMAN
        )
        await self.front.to_user(origin, record, TO_HUMAN)
        return True

    async def _forward(self, msg: Incoming[OriginT], record: ThreadRecord, h: Handoff) -> None:
        assert h.desk is not None  # a handed-off thread always has its operator thread
        await self.front.to_operator(msg.origin, h.desk, f"{msg.user}: {msg.text}")
        self.metrics.handoff_messages.labels("to_operator").inc()
        await self._remember(record.id, [{"role": "user", "content": msg.text}])

    async def _give_back(self, origin: OriginT, record: ThreadRecord, h: Handoff, cause: Cause) -> None:
        if not await self._move(record, lambda old: old.to_bot(cause, self.clock()) if old.human else None):
            return
        await self._noted(record, "bot", cause, [], TO_BOT)
        await self.front.to_user(origin, record, TO_BOT)
        if h.desk is not None:
            await self.front.to_operator(
                origin, h.desk, f"{TO_BOT} ({'time-out' if cause == 'timeout' else cause})"
            )

    # -- the operator's side: called by a front-end's listener -------------------------------

    async def take(self, msg: OperatorMessage[OriginT] | None) -> bool:
        """Start handling an operator's message unless another delivery has it; True if taken."""
        if msg is None or not self.on:
            return False
        for key in msg.claims:
            if not await asyncio.to_thread(self.store.claim, key):
                return False
        self.tasks.spawn(self._operator(msg))
        return True

    async def _operator(self, msg: OperatorMessage[OriginT]) -> None:
        thread_id = await asyncio.to_thread(handoff.thread_of_desk, self.store, self._where, msg.desk)
        record = await asyncio.to_thread(get_thread, self.store, thread_id) if thread_id else None
        if record is None:
            return  # operators talking among themselves, not in a handed-off thread
        try:
            await self._from_operator(msg, record, await self._load(record.id))
        except Exception:
            log.exception("an operator's message for thread %s failed", record.id)
            self.front.count_error("turn_failed")

    async def _from_operator(self, msg: OperatorMessage[OriginT], record: ThreadRecord, h: Handoff) -> None:
        said = handoff.command(msg.text)
        if said == "bot" and h.human:
            await self._give_back(msg.origin, record, h, "operator")
        elif said == "human" and not h.human:
            await self.hand_off(msg.origin, record, "operator", msg.user, "")
        elif not h.human:
            await self.front.to_operator(msg.origin, msg.desk, NOT_HANDED)
        else:
            await self._move(record, lambda old: old.touched(self.clock()) if old.human else None)
            await self.front.to_user(msg.origin, record, msg.text)
            self.metrics.handoff_messages.labels("to_user").inc()
            await self._remember(
                record.id, [{"role": "assistant", "content": f"(A person answered:) {msg.text}"}]
            )
            if code_blocks(msg.text):
                await self._run(msg, record)

    async def _run(self, msg: OperatorMessage[OriginT], record: ThreadRecord) -> None:
        """The operator's code in the user's sandbox, in the thread's turn order; its output in
        the user's thread, and as text in the operator's."""
        reply = self.front.reply_in(msg.origin, record)
        await reply.start(self.manager.is_live(record.id))
        turn = Turn(record.id, msg.text, record.user)
        text = Transcript()
        events = self.manager.turn(record.id, DirectAgent(self.manager).respond(turn))
        async for event in detached(events, self.manager.turns):
            await reply.show(event)
            _transcribe(text, event)
        await reply.finish()
        if not text.empty:
            await self.front.to_operator(msg.origin, msg.desk, text.markdown())

    # -- state, history and counts -----------------------------------------------------------

    @property
    def _where(self) -> str:
        """Desks are named within their destination (a Slack channel, a Telegram chat)."""
        return self.front.operator_destination or ""

    async def _load(self, thread_id: str) -> Handoff:
        return await asyncio.to_thread(handoff.load, self.store, thread_id)

    async def _move(self, record: ThreadRecord, change: Callable[[Handoff], Handoff | None]) -> bool:
        """Apply ``change`` to the stored state (None: nothing to do); True if this call moved it."""
        for _ in range(BUSY_ATTEMPTS):
            new = change(await self._load(record.id))
            if new is None:
                return False
            if await asyncio.to_thread(handoff.save, self.store, record, new):
                return True
        return False

    async def _noted(
        self, record: ThreadRecord, to: str, cause: Cause, asked: list[dict[str, Any]], notice: str
    ) -> None:
        self.metrics.handoffs.labels(to, cause).inc()
        await self._remember(record.id, [*asked, {"role": "assistant", "content": notice}])

    async def _remember(self, thread_id: str, messages: list[dict[str, Any]]) -> None:
        await asyncio.to_thread(self.history.append, thread_id, Exchange(self.clock(), messages))


def _transcribe(text: Transcript, event: Event) -> None:
    if isinstance(event, Code):
        text.add_cell(event.code)
    elif isinstance(event, Stream):
        text.add_output(event.text)
    elif isinstance(event, Error):
        text.add_error(event)
