"""`/abort`: stop this conversation's Mechanic job, or withdraw its pull request."""

from __future__ import annotations

from typing import ClassVar

from app.agents.base import Agent, AgentContext, Message, Reply


class AbortAgent(Agent):
    name = "abort"
    command = "abort"
    description = "stop the running Mechanic job (or close its pull request): /abort [reason]"
    permissions: ClassVar[tuple[str, ...]] = ("mechanic",)

    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        jobs = ctx.capability("mechanic")
        return str(
            await jobs.abort(
                message.conversation, message.user, admin=message.admin, reason=message.text
            )
        )
