"""The Open Interpreter engine (open-interpreter 0.4.3, the ``oi`` extra), run against the thread's kernel.

OI is synchronous and full of local-execution paths, so:
- each turn runs ``chat()`` in a worker thread; code goes back to the event loop with
  ``run_coroutine_threadsafe`` and runs in the thread's kernel through the manager;
- the only language is our kernel's Python: the terminal refuses every other language
  before OI's own interceptions (``apt install`` via subprocess) could run anything here;
- images and all other outputs reach the user as events directly; OI and its model get a
  text summary, so OI never builds its invalid ``role: "computer"`` image messages;
- every chunk is copied at once, because OI keeps mutating the dicts it has yielded.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import openai

from controller.agent.base import AgentConfig, Turn
from controller.agent.history import Exchange, History, messages_of
from controller.agent.llm import LlmCall, describe
from controller.agent.outputs import ExecutionSummary
from controller.agent.prompt import system_prompt
from controller.events import Code, Done, Error, Event, Message
from controller.manager import SandboxManager
from controller.metrics import Metrics
from controller.profiles import Profile
from controller.stores.base import ThreadStore

HISTORY_KEY = "oi_history"
TOOL_NAME = "execute"  # OI's own tool
CONTEXT_WINDOW = 128_000
MAX_TOKENS = 4096
Emit = Callable[[Event | None], None]


def import_oi() -> Any:
    # litellm fetches its cost map from the internet at import unless told not to, and OI sets
    # this only after litellm is imported.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import interpreter
    except ImportError as exc:
        raise RuntimeError(
            "agent=open-interpreter needs the oi extra: uv sync --extra oi (or pip install 'threadbox[oi]')"
        ) from exc
    return interpreter


@dataclass
class KernelBridge:
    """Runs code from OI's worker thread in the thread's kernel, within the turn's step budget."""

    manager: SandboxManager
    thread_id: str
    user: str | None
    loop: asyncio.AbstractEventLoop
    emit: Emit
    limit: int
    stop: threading.Event = field(default_factory=threading.Event)
    steps: int = 0

    def run(self, code: str) -> str:
        if self.steps >= self.limit:
            self.stop.set()  # OI would otherwise ask the model again, forever
            return f"Not run: the limit of {self.limit} code runs was reached."
        self.steps += 1
        return asyncio.run_coroutine_threadsafe(self._execute(code), self.loop).result()

    async def _execute(self, code: str) -> str:
        summary = ExecutionSummary()
        self.emit(Code(code=code))
        async for event in self.manager.execute(self.thread_id, code, user=self.user):
            summary.add(event)
            if not isinstance(event, Done):
                self.emit(event)
        return summary.text()


def kernel_language(bridge: KernelBridge) -> type:
    class KernelPython:
        name = "python"
        aliases = ("py", "python3", "ipython")
        file_extension = "py"

        # OI crashes on a Language without its own __init__ (it inspects __init__.__code__).
        def __init__(self, computer: Any) -> None:
            self.computer = computer

        def run(self, code: str) -> Iterator[dict[str, Any]]:
            yield {"type": "console", "format": "output", "content": bridge.run(code)}

        def stop(self) -> None:
            """The manager's exec_timeout interrupts runaway code."""

        def terminate(self) -> None:
            """The kernel belongs to the manager, not to OI."""

    return KernelPython


def refusing_terminal(oi: Any, language: type) -> Any:
    """A terminal that only knows ``language`` and refuses everything else before OI's shortcuts."""
    from interpreter.core.computer.terminal.terminal import Terminal

    class KernelOnlyTerminal(Terminal):  # type: ignore[misc]
        def run(self, language: str, code: str, stream: bool = False, display: bool = False) -> Any:
            if self.get_language(language) is None:
                refusal = [refused(language)]
                return iter(refusal) if stream else refusal
            return super().run(language, code, stream=stream, display=display)

    terminal = KernelOnlyTerminal(oi.computer)
    terminal.languages = [language]
    return terminal


def refused(language: str) -> dict[str, Any]:
    return {
        "type": "console",
        "format": "output",
        "content": f"`{language}` cannot run here: only Python runs, in this thread's sandbox.",
    }


def single_attempt(metrics: Metrics, llm_model: str, **params: Any) -> Any:
    """OI's default retries whole streams (duplicating output) and retries with a dummy key.
    Counted, timed and its tokens added up in ``metrics`` and the turn's usage, as the builtin
    agent's calls are (``params`` names the model with LiteLLM's provider prefix)."""
    import litellm

    params["num_retries"] = 0
    params["stream_options"] = {"include_usage": True}
    call = LlmCall(metrics, llm_model)
    try:
        for chunk in litellm.completion(**params):
            if usage := getattr(chunk, "usage", None):
                call.usage(usage)
            yield chunk
    except Exception as exc:
        call.failed(failure(exc, str(params.get("api_base"))))
        raise
    finally:
        call.end()


def new_instance(config: AgentConfig, bridge: KernelBridge, metrics: Metrics) -> Any:
    oi = import_oi().OpenInterpreter(
        auto_run=True,
        offline=True,
        disable_telemetry=True,
        conversation_history=False,
        import_computer_api=False,
        import_skills=False,
        sync_computer=False,
        loop=False,
    )
    oi.llm.model = f"openai/{config.llm_model}"
    oi.llm.api_base = config.llm_base_url
    oi.llm.api_key = config.llm_api_key.get_secret_value() if config.llm_api_key else "unset"
    oi.llm.supports_functions = True
    oi.llm.supports_vision = False
    oi.llm.vision_renderer = None
    oi.llm.context_window = CONTEXT_WINDOW
    oi.llm.max_tokens = MAX_TOKENS
    oi.llm.completions = functools.partial(single_attempt, metrics, config.llm_model)
    oi.computer.terminate()
    oi.computer.terminal = refusing_terminal(oi, kernel_language(bridge))
    return oi


def storable(message: dict[str, Any]) -> bool:
    """Images and confirmations are not conversation: the model never saw them."""
    return message.get("type") not in ("image", "confirmation")


def failure(exc: BaseException, base_url: str) -> Error:
    # OI wraps some LLM errors in a bare Exception; the SDK's error is further down the chain.
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, openai.APIError):
            return describe(cause, base_url)
        cause = cause.__cause__ or cause.__context__
    return Error(kind="exception", ename=type(exc).__name__, evalue=str(exc)[:500])


@dataclass
class Instance:
    oi: Any
    bridge: KernelBridge


class OpenInterpreterAgent:
    name = "open-interpreter"

    def __init__(self, config: AgentConfig, manager: SandboxManager, store: ThreadStore) -> None:
        import_oi()  # fail at startup, not at the first message, if the extra is missing
        self.config = config
        self.manager = manager
        self.store = store
        self.history = History(store, HISTORY_KEY, config.history_token_budget, config.history_ttl_days)
        # One OI instance per thread (OI keeps per-chat state on it), the least recent evicted.
        self._instances: OrderedDict[str, Instance] = OrderedDict()

    async def respond(self, turn: Turn) -> AsyncIterator[Event]:
        started = time.monotonic()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        instance = await self._instance(turn, loop)

        def emit(event: Event | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        instance.bridge.emit = emit
        profile = await asyncio.to_thread(self.manager.profiles.of, turn.thread_id)
        await asyncio.to_thread(self._prepare, instance.oi, turn, profile)
        past = len(instance.oi.messages)
        worker = asyncio.ensure_future(asyncio.to_thread(self._chat, instance, turn.text))
        while (event := await queue.get()) is not None:
            yield event
        status = await worker
        new = [dict(m) for m in instance.oi.messages[past:] if storable(m)]
        await asyncio.to_thread(self.history.append, turn.thread_id, Exchange(time.time(), new))
        yield Done(status=status, seconds=time.monotonic() - started)

    async def _instance(self, turn: Turn, loop: asyncio.AbstractEventLoop) -> Instance:
        # On the event loop, so concurrent turns never touch the LRU at once.
        instance = self._instances.pop(turn.thread_id, None)
        if instance is None:
            bridge = KernelBridge(
                self.manager, turn.thread_id, turn.user, loop, lambda _: None, self.config.agent_max_steps
            )
            oi = await asyncio.to_thread(new_instance, self.config, bridge, self.manager.metrics)
            instance = Instance(oi, bridge)
        self._instances[turn.thread_id] = instance
        while len(self._instances) > self.config.max_sandboxes:
            self._instances.popitem(last=False)
        instance.bridge.user, instance.bridge.loop = turn.user, loop
        instance.bridge.steps = 0
        instance.bridge.stop = instance.oi.stop_event = threading.Event()
        return instance

    def _prepare(self, oi: Any, turn: Turn, profile: Profile) -> None:
        """Load the thread's history from the store (it may have changed replica) and the prompt."""
        ttl = self.config.file_ttl_days
        files = [f for f in self.store.list_files(turn.thread_id) if not f.expired(ttl)]
        # OI runs {{...}} in its system message as Python; a file name must not be able to.
        prompt = system_prompt(files, turn.attachments, TOOL_NAME, profile)
        oi.system_message = prompt.replace("{{", "{ {")
        oi.custom_instructions = ""
        oi.messages = messages_of(self.history.load(turn.thread_id))

    def _chat(self, instance: Instance, text: str) -> Literal["ok", "error"]:
        emit, bridge = instance.bridge.emit, instance.bridge
        status: Literal["ok", "error"] = "ok"
        try:
            for message in _assistant_messages(instance.oi.chat(text, display=False, stream=True)):
                emit(Message(text=message))
            if bridge.stop.is_set():
                emit(
                    Message(
                        text=f"I stopped here: I reached the limit of {bridge.limit} code runs for one "
                        "message. Reply to let me continue."
                    )
                )
        except Exception as exc:
            emit(failure(exc, self.config.llm_base_url or "the default endpoint"))
            status = "error"
        finally:
            emit(None)
        return status


def _assistant_messages(chunks: Iterator[dict[str, Any]]) -> Iterator[str]:
    """Complete assistant text messages from OI's LMC chunk stream."""
    parts: list[str] = []
    for raw in chunks:
        chunk = dict(raw)  # OI mutates yielded chunks later
        if chunk.get("role") != "assistant" or chunk.get("type") != "message":
            continue
        if chunk.get("end"):
            if "".join(parts).strip():
                yield "".join(parts).strip()
            parts = []
        elif isinstance(chunk.get("content"), str):
            parts.append(chunk["content"])
    if "".join(parts).strip():
        yield "".join(parts).strip()
