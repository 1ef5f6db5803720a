"""A turn's text as it grows: code output in fences, agent text and notes as prose.

Errors become plain sentences, with the tail of a traceback for exceptions in
user code: the full traceback is long and the last frames are what matter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from controller.events import Error

TRACEBACK_LINES = 12


@dataclass
class _Part:
    kind: Literal["text", "code", "cell"]  # cell: code that ran; code: its output
    body: str


@dataclass
class Transcript:
    parts: list[_Part] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.parts

    def add_text(self, text: str) -> None:
        if text.strip():
            self.parts.append(_Part("text", text.strip()))

    def add_output(self, text: str) -> None:
        """Output of code; consecutive output shares one fenced block, as in a terminal."""
        if not text:
            return
        if self.parts and self.parts[-1].kind == "code":
            self.parts[-1].body += text
        else:
            self.parts.append(_Part("code", text))

    def add_error(self, error: Error) -> None:
        self.add_text(describe_error(error))
        if error.kind == "exception" and error.traceback:
            self.add_code_block(trim_traceback(error.traceback))

    def add_cell(self, code: str) -> None:
        """Code that runs; its output follows in a block of its own."""
        self.parts.append(_Part("cell", code))

    def add_code_block(self, text: str) -> None:
        self.parts.append(_Part("code", text))

    def markdown(self) -> str:
        return "\n".join(_render(part) for part in self.parts)


def _render(part: _Part) -> str:
    if part.kind == "text":
        return part.body
    if part.kind == "cell":
        return f"```python\n{part.body.rstrip()}\n```"
    body = part.body.rstrip("\n") or " "
    return f"```\n{body}\n```"


def describe_error(error: Error) -> str:
    if error.kind == "exception":
        return f"Your code raised `{error.ename}: {error.evalue}`"
    if error.kind in ("timeout", "stopped", "kernel_died"):
        return error.evalue
    prefix = {
        "quota": "A quota was reached",
        "sandbox_failed": "The sandbox ran into a problem",
        "rejected": "This was not run",
        "llm_failed": "The language model could not answer",
    }[error.kind]
    return f"{prefix}: {error.evalue}"


def trim_traceback(lines: list[str]) -> str:
    text = "\n".join(lines).splitlines()
    if len(text) <= TRACEBACK_LINES:
        return "\n".join(text)
    return "\n".join([f"... {len(text) - TRACEBACK_LINES} lines omitted ...", *text[-TRACEBACK_LINES:]])
