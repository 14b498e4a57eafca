"""`/deploy <pr>`, `/rollback` and `/releases`: what runs, putting a Mechanic pull request
in service, and going back (see `app/deploy/`)."""

from __future__ import annotations

from typing import ClassVar

from app.agents.base import Agent, AgentContext, Message, Reply


class DeployAgent(Agent):
    name = "deploy"
    command = "deploy"
    description = "deploy a Mechanic pull request: /deploy <number>"
    permissions: ClassVar[tuple[str, ...]] = ("deploy",)

    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        number = message.text.strip().lstrip("#")
        if not number.isdigit() or not 0 < int(number) < 10**9:
            return "Which pull request? /deploy <number>, for example /deploy 12"
        return str(
            await ctx.capability("deploy").request(
                int(number), by=message.user, conversation=message.conversation,
                admin=message.admin,
            )
        )  # fmt: skip


class RollbackAgent(Agent):
    name = "rollback"
    command = "rollback"
    description = "go back to the previous release (admins): /rollback [reason]"
    permissions: ClassVar[tuple[str, ...]] = ("deploy",)

    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        offer: Reply = await ctx.capability("deploy").offer_rollback(
            message.user, message.text.strip()
        )
        return offer

    async def on_choice(self, question: str, choice: str, ctx: AgentContext) -> Reply | str:
        return str(await ctx.capability("deploy").chose(question, choice))


class ReleasesAgent(Agent):
    name = "releases"
    command = "releases"
    description = "the releases: what runs, since when, and what came before"
    permissions: ClassVar[tuple[str, ...]] = ("deploy",)

    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        return str(await ctx.capability("deploy").describe())
