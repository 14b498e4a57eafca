"""The graphs. This module only wires; each node lives in `nodes/`."""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from app.orchestrator.context import Deps
from app.orchestrator.nodes.ask import ask
from app.orchestrator.nodes.decide import decide
from app.orchestrator.nodes.respond import respond
from app.orchestrator.nodes.route import route
from app.orchestrator.state import ApprovalState, Conversation

Graph = CompiledStateGraph[Any, Deps, Any, Any]


def conversation_graph(checkpointer: BaseCheckpointSaver[Any]) -> Graph:
    graph = StateGraph(Conversation, context_schema=Deps)
    graph.add_node("route", route)
    graph.add_node("respond", respond)
    graph.add_edge(START, "route")
    graph.add_edge("route", "respond")
    graph.add_edge("respond", END)
    return graph.compile(checkpointer=checkpointer)


def approval_graph(checkpointer: BaseCheckpointSaver[Any]) -> Graph:
    graph = StateGraph(ApprovalState, context_schema=Deps)
    graph.add_node("ask", ask)
    graph.add_node("decide", decide)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", "decide")
    graph.add_edge("decide", END)
    return graph.compile(checkpointer=checkpointer)
