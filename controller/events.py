"""Typed events that a turn yields, in order, ending with exactly one ``done``.

They are pydantic models so that the HTTP API streams them as NDJSON/SSE and
documents them in its OpenAPI schema, and front-ends (Slack, web console, CLI)
render them without knowing about the Jupyter protocol.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter


class Status(BaseModel):
    """Progress before code runs: sandbox starting, restoring, queued."""

    type: Literal["status"] = "status"
    phase: Literal["queued", "starting", "restoring", "ready", "persisting"]
    message: str
    queue_position: int | None = None


class Code(BaseModel):
    """Code an agent is about to run; its output and errors follow (front-ends show a cell)."""

    type: Literal["code"] = "code"
    code: str


class Stream(BaseModel):
    type: Literal["stdout", "stderr"]
    text: str


class Display(BaseModel):
    """Rich output: ``display_data`` or an ``execute_result`` (``is_result``)."""

    type: Literal["display"] = "display"
    data: dict[str, Any]
    is_result: bool = False
    execution_count: int | None = None


class Error(BaseModel):
    """An error in user code or in running it. ``kind`` lets front-ends phrase it."""

    type: Literal["error"] = "error"
    kind: Literal[
        "exception", "timeout", "stopped", "kernel_died", "sandbox_failed", "quota", "rejected", "llm_failed"
    ]
    ename: str
    evalue: str
    traceback: list[str] = Field(default_factory=list)


class FilesChanged(BaseModel):
    """Files the turn created or changed, already persisted to the thread store."""

    type: Literal["files"] = "files"
    changed: list[str]
    deleted: list[str] = Field(default_factory=list)
    refused: dict[str, str] = Field(default_factory=dict)


class Message(BaseModel):
    """Text from the agent (LLM) rather than from code."""

    type: Literal["message"] = "message"
    text: str


class Done(BaseModel):
    type: Literal["done"] = "done"
    status: Literal["ok", "error", "aborted"]
    execution_count: int | None = None
    seconds: float = 0.0


Event = Annotated[
    Status | Code | Stream | Display | Error | FilesChanged | Message | Done, Field(discriminator="type")
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(raw: str | bytes) -> Event:
    return EVENT_ADAPTER.validate_json(raw)
