"""A local OpenAI-compatible chat-completions server that plays a script, for deterministic agent tests.

Each test queues steps (a text reply, tool calls, an HTTP error, a stall); every request
takes the next one. The server speaks the real wire format (SSE chunks, tool-call deltas
with arguments split mid-JSON), validates what clients send (roles, tool_call_id pairing)
and records every request. Anything unexpected (validation failure, an exhausted script,
a ``when`` that does not match) answers loudly and is listed in ``problems``;
``fake_llm()`` fails the test on exit if there are any.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.server import serve

ROLES = {"system", "developer", "user", "assistant", "tool"}


@dataclass(frozen=True)
class Usage:
    """What a completion reports as its ``usage``; ``cached`` is the part of ``prompt`` the
    provider's cache served (``prompt_tokens_details.cached_tokens``)."""

    prompt: int = 1
    completion: int = 1
    cached: int = 0

    def wire(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }


@dataclass
class Step:
    # Only answer if the last message's text contains this; otherwise the test is wrong.
    when: str | None = field(default=None, kw_only=True)
    usage: Usage = field(default_factory=Usage, kw_only=True)


@dataclass
class Text(Step):
    text: str
    pieces: int = 3


@dataclass
class Tool(Step):
    calls: list[tuple[str, dict[str, Any]]]


@dataclass
class Fail(Step):
    status: int
    retry_after: float | None = None
    message: str = "scripted failure"


@dataclass
class Stall(Step):
    seconds: float


def run_python(*codes: str, when: str | None = None, usage: Usage | None = None) -> Tool:
    """The built-in agent's tool; several codes make parallel calls."""
    return Tool([("run_python", {"code": code}) for code in codes], when=when, usage=usage or Usage())


def execute(code: str, language: str = "python", when: str | None = None) -> Tool:
    """Open Interpreter's tool."""
    return Tool([("execute", {"language": language, "code": code})], when=when)


def split(text: str, pieces: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, pieces)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content)
    return str(content or "")


def validate(messages: list[dict[str, Any]]) -> str | None:
    """What a strict OpenAI-compatible server would reject, or None."""
    pending: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ROLES:
            return f"messages[{i}]: unknown role {role!r}"
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                return f"messages[{i}]: tool_call_id {call_id!r} answers no pending tool call"
            pending.discard(call_id)
            continue
        if pending:
            return f"messages[{i}]: tool calls {sorted(pending)} have no tool result before this {role}"
        if role == "assistant":
            pending = {call["id"] for call in message.get("tool_calls") or []}
    if pending:
        return f"tool calls {sorted(pending)} have no tool result"
    return None


def error_body(status: int, message: str) -> dict[str, Any]:
    kinds = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_exceeded"}
    return {"error": {"message": message, "type": kinds.get(status, "server_error"), "code": status}}


class FakeOpenAI:
    def __init__(self) -> None:
        self.script: deque[Step] = deque()
        self.requests: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.reported: list[Usage] = []  # every usage sent, in order
        self.url = ""
        self.closing = False
        self._ids = itertools.count(1)
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._completions, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def add(self, *steps: Step) -> None:
        self.script.extend(steps)

    def _problem(self, status: int, message: str) -> JSONResponse:
        self.problems.append(message)
        return JSONResponse(error_body(status, f"fake_openai: {message}"), status_code=status)

    async def _models(self, _: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def _completions(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        messages = body.get("messages") or []
        invalid = validate(messages)
        if invalid:
            return self._problem(400, invalid)
        if not self.script:
            return self._problem(500, f"script exhausted at request {len(self.requests)}")
        step = self.script.popleft()
        last = text_of(messages[-1]) if messages else ""
        if step.when is not None and step.when not in last:
            return self._problem(500, f"expected a last message containing {step.when!r}, got {last[:300]!r}")
        return await self._answer(step, body)

    async def _answer(self, step: Step, body: dict[str, Any]) -> Response:
        if isinstance(step, Fail):
            headers = {"retry-after": f"{step.retry_after:g}"} if step.retry_after is not None else None
            return JSONResponse(error_body(step.status, step.message), step.status, headers=headers)
        if isinstance(step, Stall):
            end = time.monotonic() + step.seconds
            while time.monotonic() < end and not self.closing:
                await asyncio.sleep(0.05)
            return JSONResponse(error_body(504, "stalled"), 504)
        assert isinstance(step, Text | Tool)
        model = str(body.get("model", "fake-model"))
        if not body.get("stream"):
            return JSONResponse(self._completion(step, model))
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(self._sse(step, model, usage), media_type="text/event-stream")

    def _tool_calls(self, step: Tool) -> list[dict[str, Any]]:
        return [
            {
                "id": f"call_{next(self._ids)}",
                "type": "function",
                "function": {"name": n, "arguments": json.dumps(a)},
            }
            for n, a in step.calls
        ]

    def _completion(self, step: Text | Tool, model: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if isinstance(step, Text):
            message["content"], finish = step.text, "stop"
        else:
            message["tool_calls"], finish = self._tool_calls(step), "tool_calls"
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": self._report(step.usage),
        }

    def _report(self, usage: Usage) -> dict[str, Any]:
        self.reported.append(usage)
        return usage.wire()

    def _deltas(self, step: Text | Tool) -> Iterator[tuple[dict[str, Any], str | None]]:
        if isinstance(step, Text):
            yield {"role": "assistant", "content": ""}, None
            for piece in split(step.text, step.pieces):
                yield {"content": piece}, None
            yield {}, "stop"
            return
        for index, call in enumerate(self._tool_calls(step)):
            head = {"index": index, "id": call["id"], "type": "function"}
            head["function"] = {"name": call["function"]["name"], "arguments": ""}
            role = {"role": "assistant", "content": None} if index == 0 else {}
            yield {**role, "tool_calls": [head]}, None
            for fragment in split(call["function"]["arguments"], 3):
                yield {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}, None
        yield {}, "tool_calls"

    async def _sse(self, step: Text | Tool, model: str, usage: bool) -> AsyncIterator[bytes]:
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        for delta, finish in self._deltas(step):
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        if usage:  # the last chunk, with no choices, as the API sends it with include_usage
            totals = self._report(step.usage)
            yield f"data: {json.dumps({**base, 'choices': [], 'usage': totals})}\n\n".encode()
        yield b"data: [DONE]\n\n"


@contextmanager
def fake_llm() -> Iterator[FakeOpenAI]:
    """Serve a FakeOpenAI on a free local port; fail the test if it saw anything unexpected."""
    fake = FakeOpenAI()
    with serve(fake.app) as url:
        fake.url = url
        try:
            yield fake
        finally:
            fake.closing = True
    assert not fake.problems, f"the fake LLM saw problems: {fake.problems}"
    assert not fake.script, f"scripted steps never requested: {list(fake.script)}"
