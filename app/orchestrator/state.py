"""The state LangGraph keeps for us, per thread, in Postgres."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

GRAPH_VERSION = 1  # bump when the state's shape or the graph's meaning changes
HISTORY = 20


def keep_recent(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return (old + new)[-HISTORY:]


class Conversation(TypedDict, total=False):
    """One conversation (`tg:<chat>`, `cli:<name>`, `gh:<repo>#<n>`)."""

    mode: str | None  # the agent plain text goes to; None: no mode
    history: Annotated[list[dict[str, Any]], keep_recent]  # recent turns, both sides
    inbound: dict[str, Any]  # this turn's message (see Inbound)
    target: str | None  # the agent this turn goes to, decided by `route`
    target_text: str  # what that agent is given
    outbound: list[dict[str, Any]]  # this turn's replies (see Outbound)
    graph_version: int  # GRAPH_VERSION of the code that last wrote this thread


class ApprovalState(TypedDict, total=False):
    """One question with buttons, waiting in an `interrupt()` for a person's choice."""

    approval: str  # the approvals row id
    agent: str
    question: str  # the agent's own name for the question, handed back to `on_choice`
    conversation: str
    decision: dict[str, Any]  # {"choice": key | None, "by": user, "expired": bool}
    outbound: list[dict[str, Any]]
