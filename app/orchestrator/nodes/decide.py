"""`decide`: give the person's choice (or the expiry) to the agent that asked."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from app.agents.base import as_reply
from app.agents.hosted import failure_text
from app.orchestrator.context import Deps
from app.orchestrator.nodes.respond import reply_out
from app.orchestrator.state import ApprovalState


async def decide(state: ApprovalState, runtime: Runtime[Deps]) -> dict[str, Any]:
    decision = state["decision"]
    name = state["agent"]
    if decision.get("expired"):
        return {"outbound": [{"text": "The question expired without an answer.", "agent": name}]}
    async with runtime.context.registry.use() as agents:
        loaded = agents.agents.get(name)
        if loaded is None:
            text = f"The {name} agent is no longer loaded; the answer was recorded."
            return {"outbound": [{"text": text, "agent": "persais"}]}
        try:
            result = await asyncio.wait_for(
                loaded.agent.on_choice(state["question"], decision["choice"], loaded.context),
                runtime.context.agent_timeout,
            )
        except Exception as exc:  # the agent sandbox's edge
            loaded.context.log.exception("agent %s failed on a choice", name)
            return {
                "outbound": [
                    {
                        "text": f"⚠ The {name} agent failed: {failure_text(exc)}",
                        "agent": name,
                        "error": True,
                    }
                ]
            }
    return {"outbound": [reply_out(name, as_reply(result))]}
