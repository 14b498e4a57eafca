"""`respond`: hand the turn to its agent and collect the reply."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from app.agents.base import Message, Reply, as_reply
from app.agents.hosted import failure_text
from app.orchestrator.context import Deps
from app.orchestrator.state import Conversation


def reply_out(agent: str, reply: Reply) -> dict[str, Any]:
    return {
        "text": reply.text,
        "agent": agent,
        "choices": [
            [choice.key, choice.label, choice.url] if choice.url else [choice.key, choice.label]
            for choice in reply.choices
        ],
        "question": reply.question,
    }


async def respond(state: Conversation, runtime: Runtime[Deps]) -> dict[str, Any]:
    target = state.get("target")
    outbound = list(state.get("outbound", []))
    if target is None:
        return {"outbound": outbound, "history": _said(outbound)}
    inbound = state["inbound"]
    message = Message(
        text=state.get("target_text", ""),
        user=inbound["user"],
        user_name=inbound["user_name"],
        conversation=inbound["conversation"],
        command=target,
        admin=bool(inbound.get("admin")),
    )
    async with runtime.context.registry.use() as agents:
        loaded = agents.agents.get(target)
        if loaded is None:
            why = agents.quarantined.get(target)
            text = f"The {target} agent is " + (
                f"quarantined: {why.reason}" if why else "not loaded."
            )
            outbound.append({"text": text, "agent": "persais"})
        else:
            try:
                result = await asyncio.wait_for(
                    loaded.agent.handle(message, loaded.context), runtime.context.agent_timeout
                )
                outbound.append(reply_out(target, as_reply(result)))
            except Exception as exc:  # the agent sandbox's edge: a failing agent is reported
                loaded.context.log.exception("agent %s failed", target)
                problem = failure_text(exc)
                outbound.append(
                    {
                        "text": f"⚠ The {target} agent failed: {problem}",
                        "agent": target,
                        "error": True,
                    }
                )
    return {"outbound": outbound, "history": _said(outbound)}


def _said(outbound: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"role": "agent", "agent": o["agent"], "text": o["text"][:2000]} for o in outbound]
