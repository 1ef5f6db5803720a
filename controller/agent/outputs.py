"""Turns the events of one code execution into the bounded text the model reads back.

Users see every event; the model sees a summary, because raw outputs (long prints,
base64 figures, huge tracebacks) would blow the context window and the history budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.events import Display, Done, Error, Event, FilesChanged, Stream

MAX_STREAM_CHARS = 3000
MAX_RESULT_CHARS = 1500
TRACEBACK_LINES = 8


def clip(text: str, limit: int) -> str:
    """Keep the head and the tail: the start shows what ran, the end shows how it finished."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters cut ...]\n{text[-half:]}"


def describe_display(event: Display) -> str:
    data = event.data
    images = [k for k in data if k.startswith("image/")]
    if images:
        return "[image]"
    if "text/plain" in data:
        return clip(str(data["text/plain"]), MAX_RESULT_CHARS)
    return "[" + ", ".join(sorted(data)) + " output]"


@dataclass
class ExecutionSummary:
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    displays: list[str] = field(default_factory=list)
    errors: list[Error] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    done: Done | None = None

    def add(self, event: Event) -> None:
        if isinstance(event, Stream):
            (self.stdout if event.type == "stdout" else self.stderr).append(event.text)
        elif isinstance(event, Display):
            self.displays.append(describe_display(event))
        elif isinstance(event, Error):
            self.errors.append(event)
        elif isinstance(event, FilesChanged):
            self.files.extend(event.changed)
        elif isinstance(event, Done):
            self.done = event

    def text(self) -> str:
        parts: list[str] = []
        if self.stdout:
            parts.append("stdout:\n" + clip("".join(self.stdout), MAX_STREAM_CHARS))
        if self.stderr:
            parts.append("stderr:\n" + clip("".join(self.stderr), MAX_STREAM_CHARS))
        parts.extend(self.displays)
        parts.extend(_error_text(e) for e in self.errors)
        if self.files:
            parts.append("files saved: " + ", ".join(self.files))
        return "\n".join(parts) if parts else "(no output)"


def _error_text(error: Error) -> str:
    tail = [line for line in error.traceback if line.strip()][-TRACEBACK_LINES:]
    trace = clip("\n".join(tail), MAX_STREAM_CHARS)
    return f"{error.ename}: {error.evalue}" + (f"\n{trace}" if trace else "")
