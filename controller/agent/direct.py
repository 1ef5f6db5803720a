"""Direct-code mode: with no LLM configured, fenced code blocks run as they are.

This keeps threadbox useful with no API key at all.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from controller.agent.base import Turn
from controller.events import Code, Done, Event, Message
from controller.manager import SandboxManager

FENCE = re.compile(r"```(?P<body>.*?)```", re.DOTALL)
# A first line that is one bare word is the block's language; anything else on it is code, since
# Slack's composer sends ```x = 1``` and ```(a, b) = 1, 2\nprint(a)``` with no newline after the fence.
INFO_LINE = re.compile(r"[ \t]*(?P<lang>[\w+-]*)[ \t]*\n")
RUNNABLE = {"", "python", "py", "python3", "ipython"}

HELP = (
    "No language model is configured, so I run code directly. Put Python in a fenced block, "
    "for example:\n```python\nimport pandas as pd\nprint(pd.__version__)\n```"
)


def code_blocks(text: str) -> list[str]:
    return [code for lang, code in map(_split, FENCE.finditer(text)) if lang.lower() in RUNNABLE]


def _split(block: re.Match[str]) -> tuple[str, str]:
    body = block["body"]
    info = INFO_LINE.match(body)
    return (info["lang"], body[info.end() :]) if info else ("", body)


class DirectAgent:
    name = "direct"

    def __init__(self, manager: SandboxManager) -> None:
        self.manager = manager

    async def respond(self, turn: Turn) -> AsyncIterator[Event]:
        blocks = code_blocks(turn.text)
        if not blocks:
            yield Message(text=HELP)
            yield Done(status="ok")
            return
        last: Done | None = None
        for code in blocks:
            yield Code(code=code)
            async for event in self.manager.execute(turn.thread_id, code, user=turn.user):
                if isinstance(event, Done):
                    last = event
                    continue
                yield event
            assert last is not None
            if last.status != "ok":
                break  # later blocks usually depend on the failed one
        assert last is not None
        yield last
