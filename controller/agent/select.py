"""Chooses the agent from Settings."""

from __future__ import annotations

from controller.agent.base import Agent, AgentConfig
from controller.agent.builtin import BuiltinAgent
from controller.agent.direct import DirectAgent
from controller.config import Settings
from controller.manager import SandboxManager
from controller.stores.base import ThreadStore


def agent_kind(settings: Settings) -> str:
    if settings.agent != "auto":
        return settings.agent
    return "builtin" if settings.llm_base_url or settings.llm_api_key else "direct"


def build_agent(settings: Settings, manager: SandboxManager, store: ThreadStore) -> Agent:
    kind = agent_kind(settings)
    if kind == "builtin":
        return BuiltinAgent(AgentConfig.from_settings(settings), manager, store)
    if kind == "open-interpreter":
        # Imported here: the engine is an optional extra and heavy to import.
        from controller.agent.open_interpreter import OpenInterpreterAgent

        return OpenInterpreterAgent(AgentConfig.from_settings(settings), manager, store)
    return DirectAgent(manager)
