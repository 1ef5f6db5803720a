"""Logging for ``threadbox serve`` and ``dev``: JSON lines (the image's default) or plain text.

Every line logged during a turn carries its thread id, turn id and front-end
(controller/turncontext.py). No line carries a secret: the configured secrets' values, and
anything shaped like a bearer, threadbox or Slack token, are redacted from the final text,
arguments and tracebacks included.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from typing import Literal

from pydantic import SecretStr

from controller.config import Settings
from controller.turncontext import FRONTEND, THREAD, TURN

REDACTED = "[redacted]"
HANDLER_NAME = "threadbox"
TOKEN_SHAPES = re.compile(r"(?i)(bearer\s+)\S+|\btbx_[\w-]{8,}|\bxox[a-z]-[\w-]+|\bxapp-[\w-]+")
CONTEXT = (("thread_id", THREAD), ("turn_id", TURN), ("frontend", FRONTEND))
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(turn)s: %(message)s"


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is redacted whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return TOKEN_SHAPES.sub(lambda m: (m.group(1) or "") + REDACTED, text)


def _context() -> dict[str, str]:
    return {key: value for key, var in CONTEXT if (value := var.get()) is not None}


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self.redact(record.getMessage()),
            **_context(),
        }
        if record.exc_info:
            line["exception"] = self.redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__(TEXT_FORMAT)
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        context = _context()
        record.turn = f" [{' '.join(f'{k}={v}' for k, v in context.items())}]" if context else ""
        return self.redact(super().format(record))


def secrets_of(settings: Settings) -> list[str]:
    """The values of every secret setting (tokens, keys, passwords)."""
    values = (getattr(settings, name) for name in type(settings).model_fields)
    return [v.get_secret_value() for v in values if isinstance(v, SecretStr)]


def configure(settings: Settings, default: Literal["json", "text"]) -> None:
    """Send every logger's records (uvicorn's too) to stderr in the configured format."""
    redact = Redactor(secrets_of(settings))
    style = settings.log_format or default
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(redact) if style == "json" else TextFormatter(redact))
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    # Only a handler of ours is replaced: others (a test runner's capture) keep working.
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
