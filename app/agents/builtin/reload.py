"""`/reload` (admins): load `dynamic/agents/` again and swap the set in service."""

from __future__ import annotations

from typing import ClassVar

from app.agents.base import Agent, AgentContext, Message, Reply


class ReloadAgent(Agent):
    name = "reload"
    command = "reload"
    description = "load the agents again (admins)"
    permissions: ClassVar[tuple[str, ...]] = ("registry",)

    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        agents = await ctx.capability("registry").reload()
        dynamic = sorted(n for n, a in agents.agents.items() if not a.builtin)
        lines = [f"Reloaded: set {agents.fingerprint}, {len(dynamic)} dynamic agent(s)."]
        if dynamic:
            lines.append("Loaded: " + ", ".join(dynamic))
        for q in sorted(agents.quarantined.values(), key=lambda q: q.name):
            lines.append(f"Quarantined {q.name}: {q.reason}")
        return "\n".join(lines)
