"""The Echo request, its plan, and the model's replies, as the Mechanic tests script them."""

from __future__ import annotations

REQUEST = "Create an agent Echo that repeats my messages"
PLAN = {
    "kind": "agent", "name": "echo", "command": "echo",
    "description": "Repeats your messages",
    "behaviour": [{"say": "Hello", "expect": "Echo: Hello"}], "question": None,
}  # fmt: skip


def echo_reply(body: str) -> str:
    code = (
        "from app.agents.base import Agent, AgentContext, Message, Reply\n\n\n"
        "class Echo(Agent):\n"
        "    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:\n"
        f"        return {body}\n"
    )
    return f"dynamic/agents/echo/agent.py\n```python\n{code}```\n"
