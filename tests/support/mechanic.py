"""The Echo request, its plan, and the model's replies, as the Mechanic tests script them."""

from __future__ import annotations

import json
from typing import Any

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


REVIEW = json.dumps({"summary": "A small, tested agent.", "findings": []})


def routed_reply(request: dict[str, Any]) -> str:
    """The model's answer by who asks, for tests where kills and restarts change the order of
    asking: the reviewer gets REVIEW, the Mechanic's planner PLAN, anyone else (Aider) the
    Echo edit. Use as `llm.next_reply = lambda: routed_reply(llm.requests[-1])`."""
    text = json.dumps(request.get("messages", []))
    if "You are Persais's code reviewer" in text:
        return REVIEW
    if "You are the planner of Persais" in text:
        return json.dumps(PLAN)
    return echo_reply('f"Echo: {message.text}"')
