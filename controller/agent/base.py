"""The agent interface: turns a user's message into code run in the thread's sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import SecretStr

from controller.config import Settings, subset
from controller.events import Event


@dataclass(frozen=True)
class AgentConfig:
    """What an LLM agent needs from Settings, and nothing else."""

    llm_model: str
    llm_base_url: str | None
    llm_api_key: SecretStr | None
    agent_max_steps: int
    history_token_budget: int
    history_ttl_days: float
    file_ttl_days: float
    max_sandboxes: int  # Open Interpreter keeps at most one instance per live sandbox

    @classmethod
    def from_settings(cls, settings: Settings) -> AgentConfig:
        return subset(cls, settings)


@dataclass(frozen=True)
class Turn:
    thread_id: str
    text: str
    user: str | None = None
    # Files attached to this message, already stored in the thread (workspace names).
    attachments: list[str] = field(default_factory=list)


class Agent(Protocol):
    name: str

    def respond(self, turn: Turn) -> AsyncIterator[Event]:
        """Yield events for this turn; the last one is Done. Runs inside the thread's turn
        (SandboxManager.turn), so it runs code with ``manager.execute`` and needs no lock."""
        ...
