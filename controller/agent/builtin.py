"""The built-in agent: a tool-calling loop on any OpenAI-compatible endpoint.

One tool, ``run_python``, runs code in the thread's kernel. The user sees every event of
every execution as it happens; the model reads back a bounded summary.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from controller.agent import ask_human
from controller.agent.base import AgentConfig, Turn
from controller.agent.history import Exchange, History, messages_of
from controller.agent.llm import LLMFailed, ToolCall, complete, make_client
from controller.agent.outputs import ExecutionSummary
from controller.agent.prompt import system_prompt
from controller.events import Code, Done, Event, Message
from controller.manager import SandboxManager
from controller.stores.base import StoredFile, ThreadStore

TOOL_NAME = "run_python"
TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "Run Python code in this thread's Jupyter kernel and get back its output "
        "(stdout/stderr, results, errors; figures appear as [image]).",
        "parameters": {
            "type": "object",
            "properties": {"code": {"type": "string", "description": "Python source to run."}},
            "required": ["code"],
        },
    },
}
HISTORY_KEY = "history"


def parse_code(call: ToolCall) -> str | None:
    if call.name != TOOL_NAME:
        return None
    try:
        args = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        return None
    code = args.get("code") if isinstance(args, dict) else None
    return code if isinstance(code, str) and code.strip() else None


def tool_result(call: ToolCall, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call.id, "content": content}


class BuiltinAgent:
    name = "builtin"

    def __init__(
        self, config: AgentConfig, manager: SandboxManager, store: ThreadStore, timeout: float = 120.0
    ) -> None:
        self.config = config
        self.manager = manager
        self.store = store
        self.client = make_client(config, timeout)
        self.history = History(store, HISTORY_KEY, config.history_token_budget, config.history_ttl_days)

    def respond(self, turn: Turn) -> AsyncIterator[Event]:
        return _TurnRun(self, turn).events()

    def files(self, thread_id: str) -> list[StoredFile]:
        ttl = self.config.file_ttl_days
        return [f for f in self.store.list_files(thread_id) if not f.expired(ttl)]


class _TurnRun:
    """State of one turn: the messages it adds and the executions it has used."""

    def __init__(self, agent: BuiltinAgent, turn: Turn) -> None:
        self.agent = agent
        self.turn = turn
        self.new: list[dict[str, Any]] = [{"role": "user", "content": turn.text}]
        self.steps = 0
        self.last_count: int | None = None

    async def events(self) -> AsyncIterator[Event]:
        started = time.monotonic()
        status: Literal["ok", "error"] = "ok"
        try:
            async for event in self._loop():
                yield event
        except LLMFailed as exc:
            yield exc.error
            status = "error"
        exchange = Exchange(time.time(), self.new)
        await asyncio.to_thread(self.agent.history.append, self.turn.thread_id, exchange)
        yield Done(status=status, execution_count=self.last_count, seconds=time.monotonic() - started)

    async def _loop(self) -> AsyncIterator[Event]:
        agent, thread_id = self.agent, self.turn.thread_id
        past = await asyncio.to_thread(agent.history.load, thread_id)
        files = await asyncio.to_thread(agent.files, thread_id)
        profile = await asyncio.to_thread(agent.manager.profiles.of, thread_id)
        system = {
            "role": "system",
            "content": system_prompt(files, self.turn.attachments, TOOL_NAME, profile),
        }
        limit = agent.config.agent_max_steps
        while True:
            messages = [system, *messages_of(past), *self.new]
            reply = await complete(
                agent.client,
                agent.config.llm_model,
                messages,
                [TOOL, *ask_human.offered()],
                agent.manager.metrics,
            )
            self.new.append(reply.message())
            if reply.text:
                yield Message(text=reply.text)
            if not reply.calls:
                return
            stopped = False
            for call in reply.calls:
                if self.steps >= limit:
                    self.new.append(
                        tool_result(call, f"Not run: the limit of {limit} code runs was reached.")
                    )
                    stopped = True
                    continue
                async for event in self._call(call):
                    yield event
            if stopped:
                yield Message(
                    text=f"I stopped here: I reached the limit of {limit} code runs for one message. "
                    "Reply to let me continue."
                )
                return

    async def _call(self, call: ToolCall) -> AsyncIterator[Event]:
        if call.name == ask_human.TOOL_NAME:  # runs no code, so it uses no step
            self.new.append(tool_result(call, ask_human.ask(call.arguments)))
            return
        # Every call counts, valid or not, so a confused model cannot loop forever.
        self.steps += 1
        code = parse_code(call)
        if code is None:
            self.new.append(
                tool_result(call, f'Invalid call: use {TOOL_NAME} with arguments {{"code": "<python>"}}.')
            )
            return
        summary = ExecutionSummary()
        yield Code(code=code)
        async for event in self.agent.manager.execute(self.turn.thread_id, code, user=self.turn.user):
            summary.add(event)
            if not isinstance(event, Done):
                yield event
        if summary.done is not None:
            self.last_count = summary.done.execution_count
        self.new.append(tool_result(call, summary.text()))
