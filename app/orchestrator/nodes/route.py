"""`route`: decide which agent this turn goes to, and whether the mode changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langgraph.runtime import Runtime

from app.agents.registry import AgentSet
from app.orchestrator.commands import parse
from app.orchestrator.context import Deps
from app.orchestrator.state import GRAPH_VERSION, Conversation

ADMIN_COMMANDS = frozenset({"rollback", "reload"})
# These answer and never become the mode.
ONE_SHOT = frozenset(
    {"help", "status", "agents", "reload", "abort", "deploy", "rollback", "releases", "lesson",
     "lessons"}
)  # fmt: skip


@dataclass(frozen=True)
class Route:
    agent: str | None  # who answers this turn (None: only `notice`)
    text: str  # what the agent is given
    mode: str | None  # the mode after this turn
    notice: str = ""  # a line from the core itself


def plan_route(text: str, mode: str | None, agents: AgentSet, *, admin: bool) -> Route:
    command, rest = parse(text)
    if mode is not None and mode not in agents.agents:
        mode = None  # its agent is gone (removed, or quarantined since)
    if command is None:
        if mode is None:
            return Route("help", "", None, "I am not in any mode. Pick a command:")
        return Route(mode, rest, mode)
    if command == "start":
        return Route("help", "", mode, "Hello! I am Persais.")
    if command == "cancel":
        if mode is None:
            return Route(None, "", None, "There is nothing to cancel.")
        return Route(None, "", None, f"Left /{agents.agents[mode].manifest.command} mode.")
    if command in ADMIN_COMMANDS and not admin:
        return Route(None, "", mode, f"Only admins may use /{command}.")
    loaded = agents.by_command(command)
    if loaded is None:
        return Route("help", "", mode, f"Unknown command /{command}.")
    name = loaded.manifest.name
    if rest or name in ONE_SHOT:
        return Route(name, rest, mode)
    notice = (
        f"You are now talking to {name} ({loaded.manifest.description}). "
        "Plain text goes to it; /cancel leaves."
    )
    return Route(name if name == "mechanic" else None, "", name, notice)


UPGRADED = "I was updated since we last spoke, so I have left the mode you were in."


async def route(state: Conversation, runtime: Runtime[Deps]) -> dict[str, Any]:
    inbound = state["inbound"]
    mode = state.get("mode")
    outbound = []
    written_by = state.get("graph_version")
    if written_by is not None and written_by != GRAPH_VERSION:
        # A checkpoint from other code: do not carry its meaning over silently.
        mode = None
        outbound.append({"text": UPGRADED, "agent": "persais"})
    plan = plan_route(
        inbound["text"], mode, runtime.context.registry.current, admin=bool(inbound.get("admin"))
    )
    if plan.notice:
        outbound.append({"text": plan.notice, "agent": "persais"})
    return {
        "mode": plan.mode,
        "target": plan.agent,
        "target_text": plan.text,
        "outbound": outbound,
        "graph_version": GRAPH_VERSION,
        "history": [{"role": "user", "user": inbound["user"], "text": inbound["text"][:2000]}],
    }
