"""What graph nodes may use, handed to every run (LangGraph's run-scoped context)."""

from __future__ import annotations

from dataclasses import dataclass

from app.agents.registry import Registry


@dataclass(frozen=True)
class Deps:
    registry: Registry
    agent_timeout: float = 30.0
