"""`/status`: the service at a glance — version, agents, conversations, the inbox, the
local forge's drift from the checkout, and what the model cost today."""

from __future__ import annotations

from typing import ClassVar

from app.agents.base import Agent, AgentContext, Message, Reply


class StatusAgent(Agent):
    name = "status"
    command = "status"
    description = "how Persais is doing"
    permissions: ClassVar[tuple[str, ...]] = ("status",)

    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        report = await ctx.capability("status")()
        lines = [f"Persais {report['version']}", f"Agents: {report['agents']}"]
        lines.append(f"Dynamic agents: {report['sandbox']}")
        lines.append(f"Conversations: {report['conversations']}")
        for conversation in report["recent"]:
            lines.append(f"  {conversation}")
        inbox = report["inbox"]
        lines.append(
            f"Inbox: {inbox['received']} waiting, {inbox['failed']} retrying, {inbox['dead']} dead"
        )
        lines.append(f"Pending approvals: {report['pending_approvals']}")
        if report.get("spend"):  # what the model cost today, against the day's budget
            lines.append(report["spend"])
        if report.get("forge"):  # the local forge: how far it and the checkout drifted
            lines.append(f"Forge: {report['forge']}")
        return "\n".join(lines)
