"""`/agents`: every agent in service with its version, and the quarantined ones with why."""

from __future__ import annotations

from typing import ClassVar

from app.agents.base import Agent, AgentContext, Message, Reply


class AgentsAgent(Agent):
    name = "agents"
    command = "agents"
    description = "the agents in service and the quarantined ones"
    permissions: ClassVar[tuple[str, ...]] = ("registry",)

    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        registry = ctx.capability("registry")
        agents = registry.current
        lines = [registry.deployments.here.where(), f"Dynamic agents: {registry.jail.describe()}"]
        lines.append(f"Agents (set {agents.fingerprint}):")
        for loaded in sorted(agents.agents.values(), key=lambda a: a.manifest.name):
            kind = "built-in" if loaded.builtin else "dynamic"
            m = loaded.manifest
            lines.append(f"  /{m.command}  {m.name} {m.version} ({kind})")
        if agents.quarantined:
            lines.append("Quarantined:")
            for q in sorted(agents.quarantined.values(), key=lambda q: q.name):
                lines.append(f"  {q.name}: {q.reason}")
        return "\n".join(lines)
