"""The graphs. This module only wires; each node lives in `nodes/`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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
Node = Callable[..., Awaitable[dict[str, Any]]]


def _chain(state: type[Any], checkpointer: BaseCheckpointSaver[Any], *nodes: Node) -> Graph:
    """START → nodes, in order → END."""
    graph = StateGraph(state, context_schema=Deps)
    previous = START
    for node in nodes:
        graph.add_node(node.__name__, node)
        graph.add_edge(previous, node.__name__)
        previous = node.__name__
    graph.add_edge(previous, END)
    return graph.compile(checkpointer=checkpointer)


def conversation_graph(checkpointer: BaseCheckpointSaver[Any]) -> Graph:
    return _chain(Conversation, checkpointer, route, respond)


def approval_graph(checkpointer: BaseCheckpointSaver[Any]) -> Graph:
    return _chain(ApprovalState, checkpointer, ask, decide)
