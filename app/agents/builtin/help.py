"""`/help` (and `/start`): what Persais can do, generated from the agents in service."""

from __future__ import annotations

from typing import ClassVar

from app.agents.base import Agent, AgentContext, Message, Reply

CORE_COMMANDS = (("cancel", "leave the current mode"),)


class HelpAgent(Agent):
    name = "help"
    command = "help"
    description = "what I can do"
    permissions: ClassVar[tuple[str, ...]] = ("registry",)

    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        agents = ctx.capability("registry").current
        lines = ["Persais — a bot that builds its own agents.", ""]
        for loaded in sorted(
            agents.agents.values(), key=lambda a: (not a.builtin, a.manifest.command)
        ):
            lines.append(f"/{loaded.manifest.command} — {loaded.manifest.description}")
        lines += [f"/{command} — {text}" for command, text in CORE_COMMANDS]
        lines += ["", "/<command> alone switches to that agent; plain text then goes to it."]
        return "\n".join(lines)
