"""`/mechanic`: the Mechanic's mode. The coding loop itself arrives with issue 4; until then
the mode exists, takes requests, and says plainly that it cannot build them yet."""

from __future__ import annotations

from typing import ClassVar

from app.agents.base import Agent, AgentContext, Message, Reply


class MechanicAgent(Agent):
    name = "mechanic"
    command = "mechanic"
    description = "describe a change; the Mechanic builds it as a pull request"
    permissions: ClassVar[tuple[str, ...]] = ()

    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        if not message.text.strip():
            return "Mechanic mode. Describe the agent or change you want."
        return (
            "Request noted, but the Mechanic cannot build changes in this version yet "
            f"(requested: {message.text.strip()[:200]})."
        )
