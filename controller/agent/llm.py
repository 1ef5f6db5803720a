"""One streamed chat completion through the openai SDK, and LLM failures as user-facing errors."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Final, cast

import httpx
import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam, ChatCompletionToolParam

from controller.agent.base import AgentConfig
from controller.events import Error
from controller.metrics import Metrics
from controller.usage.figures import add_llm_call

# A failing model service (rate limit, key, bad request, 5xx) is "llm_failed"; timeouts keep their own kind.
LLM_ERROR_KIND: Final = "llm_failed"
MAX_DETAIL = 300
_CAPITAL = re.compile(r"(?<=[a-z])(?=[A-Z])")


@dataclass
class ToolCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class Reply:
    text: str = ""
    calls: list[ToolCall] = field(default_factory=list)

    def message(self) -> dict[str, Any]:
        """The assistant message as the API expects it back in the next request."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.calls
            ]
        return message


class LLMFailed(Exception):
    def __init__(self, error: Error) -> None:
        super().__init__(error.evalue)
        self.error = error


def make_client(config: AgentConfig, timeout: float) -> AsyncOpenAI:
    key = config.llm_api_key.get_secret_value() if config.llm_api_key else "unset"
    return AsyncOpenAI(base_url=config.llm_base_url, api_key=key, timeout=timeout, max_retries=2)


class LlmCall:
    """One request to the language model, in the metrics: counted by result and timed when it
    ends, its tokens added as the model reports them, to the metrics and to the turn's usage."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self.metrics = metrics
        self.model = model  # as configured, the price table's key (a provider may answer with a dated name)
        self.started = time.monotonic()
        self.result = "ok"

    def tokens(self, prompt: int, completion: int, cached: int = 0) -> None:
        self.metrics.llm_tokens.labels("prompt").inc(prompt)
        self.metrics.llm_tokens.labels("completion").inc(completion)
        self.metrics.llm_tokens.labels("cached").inc(cached)
        add_llm_call(self.model, prompt, completion, cached)

    def usage(self, reported: Any) -> None:
        """Add a chunk's ``usage`` (the openai SDK's or LiteLLM's; both name the fields alike)."""
        details = getattr(reported, "prompt_tokens_details", None)
        cached = getattr(details, "cached_tokens", None) or 0
        self.tokens(reported.prompt_tokens or 0, reported.completion_tokens or 0, cached)

    def failed(self, error: Error) -> None:
        # LLMRateLimited -> rate_limited: the error's name as a label value.
        self.result = _CAPITAL.sub("_", error.ename.removeprefix("LLM")).lower()

    def end(self) -> None:
        self.metrics.llm_requests.labels(self.result).inc()
        self.metrics.llm_seconds.observe(time.monotonic() - self.started)


async def complete(
    client: AsyncOpenAI,
    model: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    metrics: Metrics,
) -> Reply:
    """Stream one completion and assemble it; raises LLMFailed with a clear error. Counted,
    timed and its tokens added up in ``metrics``."""
    meter = LlmCall(metrics, model)
    try:
        stream = await client.chat.completions.create(
            model=model,
            messages=cast(list[ChatCompletionMessageParam], messages),
            tools=cast(list[ChatCompletionToolParam], tools),
            stream=True,
            stream_options={"include_usage": True},
        )
        async with stream:
            return await _assemble(stream, meter)
    except (openai.APIError, httpx.HTTPError) as exc:
        error = describe(exc, str(client.base_url))
        meter.failed(error)
        raise LLMFailed(error) from exc
    finally:
        meter.end()


async def _assemble(stream: openai.AsyncStream[ChatCompletionChunk], meter: LlmCall) -> Reply:
    text: list[str] = []
    calls: dict[int, ToolCall] = {}
    async for chunk in stream:
        if chunk.usage:  # the last chunk, asked for with include_usage
            meter.usage(chunk.usage)
        for choice in chunk.choices or ():
            delta = choice.delta
            if delta.content:
                text.append(delta.content)
            for part in delta.tool_calls or ():
                call = calls.setdefault(part.index, ToolCall(id=f"call_{part.index}"))
                call.id = part.id or call.id
                if part.function:
                    call.name += part.function.name or ""
                    call.arguments += part.function.arguments or ""
    return Reply("".join(text), [calls[i] for i in sorted(calls)])


def describe(exc: Exception, base_url: str) -> Error:
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
        return Error(
            kind="timeout",
            ename="LLMTimeout",
            evalue="The language model did not answer in time, even after retries. Try again later.",
        )
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return _error("LLMUnreachable", f"Could not reach the language model at {base_url}: {exc}.")
    if isinstance(exc, openai.RateLimitError):
        return _error(
            "LLMRateLimited",
            "The language model is rate-limiting requests (HTTP 429), still after retries. "
            "Try again in a minute.",
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return _error(
            "LLMAuthFailed",
            f"The language model refused our API key (HTTP {exc.status_code}); check THREADBOX_LLM_API_KEY.",
        )
    if isinstance(exc, openai.APIStatusError):
        what = "is failing" if exc.status_code >= 500 else "refused the request"
        return _error(
            "LLMRequestFailed", f"The language model {what} (HTTP {exc.status_code}): {_detail(exc)}"
        )
    return _error("LLMFailed", f"The language model's answer broke off: {_detail(exc)}")


def _detail(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return message[:MAX_DETAIL]


def _error(ename: str, evalue: str) -> Error:
    return Error(kind=LLM_ERROR_KIND, ename=ename, evalue=evalue)
