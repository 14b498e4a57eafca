"""Built-in agents: the same contract as `dynamic/agents/`, shipped with the core."""

from __future__ import annotations

from app.agents.base import Agent
from app.agents.builtin.abort import AbortAgent
from app.agents.builtin.agents import AgentsAgent
from app.agents.builtin.deploy import DeployAgent, ReleasesAgent, RollbackAgent
from app.agents.builtin.help import HelpAgent
from app.agents.builtin.mechanic import MechanicAgent
from app.agents.builtin.memory import AskAgent, LessonAgent, LessonsAgent
from app.agents.builtin.reload import ReloadAgent
from app.agents.builtin.status import StatusAgent
from app.agents.manifest import Manifest

BUILTINS: tuple[type[Agent], ...] = (
    HelpAgent,
    StatusAgent,
    AgentsAgent,
    MechanicAgent,
    AbortAgent,
    ReloadAgent,
    DeployAgent,
    RollbackAgent,
    ReleasesAgent,
    AskAgent,
    LessonAgent,
    LessonsAgent,
)


def builtin_agents() -> list[tuple[Manifest, Agent]]:
    return [
        (
            Manifest(
                name=cls.name,
                command=cls.command,
                description=cls.description,
                version="1.0.0",
            ),
            cls(),
        )
        for cls in BUILTINS
    ]
