"""A real orchestrator (registry, LangGraph graphs, Postgres checkpoints) for a test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.conversations import Conversations
from app.orchestrator.orchestrator import Inbound, Outbound
from app.runtime import Runtime
from app.settings import Settings
from app.version import BuildInfo

ASKER = """
from app.agents.base import Agent, AgentContext, Choice, Message, Reply


class Asker(Agent):
    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        return Reply(
            text=f"Ship {message.text or 'it'}?",
            choices=(Choice("y", "Ship it"), Choice("n", "Not now")),
            question=f"ship:{message.text}",
        )

    async def on_choice(self, question: str, choice: str, ctx: AgentContext) -> Reply | str:
        return f"{question} -> {'shipped' if choice == 'y' else 'held'}"
"""


@asynccontextmanager
async def conversations(settings: Settings, database: str) -> AsyncIterator[Conversations]:
    runtime = Runtime(settings, database)
    await runtime.start(worker=False)
    convo = Conversations(settings, runtime.pool, database, BuildInfo("0.1.0", "test"))
    await convo.start()
    try:
        yield convo
    finally:
        await convo.stop()
        await runtime.stop()


async def say(
    convo: Conversations, text: str, *, user: str = "cli:ada", admin: bool = False
) -> list[Outbound]:
    inbound = Inbound(
        conversation=user, channel="terminal", user=user, user_name=user.split(":")[1],
        text=text, admin=admin,
    )  # fmt: skip
    return await convo.orchestrator.handle(inbound)


def say_in_a_new_process(settings: Settings, database: str, text: str) -> list[str]:
    """Start conversations afresh, as a restarted process would, say `text`, and stop."""

    async def run() -> list[str]:
        async with conversations(settings, database) as convo:
            return [o.text for o in await say(convo, text)]

    return asyncio.run(run())
