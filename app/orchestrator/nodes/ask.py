"""`ask`: wait — across restarts — for a person to answer an approval question."""

from __future__ import annotations

from typing import Any

from langgraph.types import interrupt

from app.orchestrator.state import ApprovalState


async def ask(state: ApprovalState) -> dict[str, Any]:
    # Nothing before the interrupt has side effects: a resumed node runs again from here.
    decision = interrupt({"approval": state["approval"], "question": state["question"]})
    return {"decision": dict(decision)}
