"""The orchestrator: one entry point for every channel.

`handle()` runs a person's message through the conversation graph of its thread and
returns what to say; a reply that asks a question becomes an approval, waiting in its own
graph thread (`approval:<id>`) in an `interrupt()`, so the conversation goes on while it
waits and the question survives restarts. `press()` answers it: the first press wins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.types import Command
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from app import audit, outbox
from app.agents.base import Reply
from app.agents.registry import Registry
from app.db import migrate
from app.orchestrator import approvals
from app.orchestrator.approvals import Approval
from app.orchestrator.context import Deps
from app.orchestrator.graph import Graph, approval_graph, conversation_graph
from app.orchestrator.state import GRAPH_VERSION

log = logging.getLogger(__name__)
DEFAULT_APPROVAL_TIMEOUT = 3600.0


@dataclass(frozen=True)
class Inbound:
    conversation: str  # the thread id
    channel: str  # "telegram" | "terminal" | "github"
    user: str  # "tg:42", "cli:ada"
    user_name: str
    text: str
    admin: bool = False


@dataclass(frozen=True)
class Outbound:
    text: str
    agent: str
    approval: Approval | None = None  # a question: show its choices as buttons
    error: bool = False


@dataclass(frozen=True)
class Press:
    """What happened when someone pressed a button."""

    ok: bool
    notice: str  # for the presser (Telegram: the callback answer)
    approval: Approval | None = None  # the question, as decided (to edit its message)
    outbound: list[Outbound] = field(default_factory=list)
    link: bool = False  # a link choice was pressed: `notice` is its address, nothing decided


class Orchestrator:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        graph_pool: AsyncConnectionPool,
        registry: Registry,
        *,
        approval_timeout: float = DEFAULT_APPROVAL_TIMEOUT,
        shown_link: Callable[[str], str] = str,
    ) -> None:
        self.pool = pool
        self.graph_pool = graph_pool
        self.registry = registry
        self.approval_timeout = approval_timeout
        self.shown_link = shown_link  # a link choice's address as it is shown now
        self.deps = Deps(registry=registry)
        self._conversation: Graph | None = None
        self._approval: Graph | None = None

    @staticmethod
    def graph_pool_for(conninfo: str, max_size: int = 5) -> AsyncConnectionPool:
        # LangGraph's checkpointer wants exactly these connection settings.
        return AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
            open=False,
            name="persais-graphs",
        )

    async def start(self) -> None:
        saver = AsyncPostgresSaver(self.graph_pool)  # type: ignore[arg-type]  # dict_row pool
        # LangGraph's own tables and migrations: idempotent, but not safe to run at the same
        # moment from two processes, so under the lock of our own migrations.
        async with self.graph_pool.connection() as conn, migrate.schema_lock(conn):
            await saver.setup()
        self._conversation = conversation_graph(saver)
        self._approval = approval_graph(saver)

    @property
    def graphs(self) -> tuple[Graph, Graph]:
        if self._conversation is None or self._approval is None:
            raise RuntimeError("the orchestrator is not started")
        return self._conversation, self._approval

    @staticmethod
    def _config(thread: str) -> RunnableConfig:
        return {"configurable": {"thread_id": thread}, "metadata": {"graph_version": GRAPH_VERSION}}

    async def handle(self, inbound: Inbound) -> list[Outbound]:
        conversation, _ = self.graphs
        state = await conversation.ainvoke(
            {"inbound": inbound.__dict__, "outbound": []},
            self._config(inbound.conversation),
            context=self.deps,
        )
        replies: list[Outbound] = []
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO conversations (id, channel, last_user, mode, messages)"
                " VALUES (%s, %s, %s, %s, 1) ON CONFLICT (id) DO UPDATE SET"
                " last_user = EXCLUDED.last_user, mode = EXCLUDED.mode,"
                " messages = conversations.messages + 1, last_at = now()",
                (inbound.conversation, inbound.channel, inbound.user, state.get("mode")),
            )
            command = inbound.text.split()[0][:40] if inbound.text.startswith("/") else None
            await audit.record(
                conn, actor=inbound.user, action="message", subject=inbound.conversation,
                detail={"command": command, "target": state.get("target")},
            )  # fmt: skip
            for out in state.get("outbound", []):
                question = None
                if out.get("choices"):
                    question = await self._ask(
                        conn, inbound.conversation, out["agent"], out["text"],
                        out["choices"], out.get("question") or "question", inbound.user,
                    )  # fmt: skip
                replies.append(
                    Outbound(out["text"], out["agent"], question, bool(out.get("error")))
                )
        return replies

    async def ask(
        self, conversation: str, agent: str, reply: Reply, *, requested_by: str
    ) -> Approval:
        """Ask a question outside a turn (a job that finished in a worker): the same
        approval, waiting in its own graph thread, as one asked in a reply."""
        choices = [[c.key, c.label, c.url] if c.url else [c.key, c.label] for c in reply.choices]
        async with self.pool.connection() as conn:
            return await self._ask(
                conn, conversation, agent, reply.text, choices, reply.question or "question",
                requested_by,
            )  # fmt: skip

    async def _ask(
        self,
        conn: AsyncConnection[Any],
        conversation: str,
        agent: str,
        prompt: str,
        choices: list[list[str]],
        question_name: str,
        requested_by: str,
    ) -> Approval:
        _, approval_graph_ = self.graphs
        question = await approvals.create(
            conn, conversation=conversation, agent=agent, question=question_name, prompt=prompt,
            choices=choices, requested_by=requested_by, timeout_seconds=self.approval_timeout,
        )  # fmt: skip
        await approval_graph_.ainvoke(
            {"approval": question.id, "agent": question.agent,
             "question": question.question, "conversation": conversation},
            self._config(f"approval:{question.id}"),
            context=self.deps,
        )  # fmt: skip
        await audit.record(
            conn, actor=agent, action="approval.asked", subject=f"approval:{question.id}",
            detail={"prompt": prompt[:200]},
        )  # fmt: skip
        return question

    async def press(self, approval_id: str, choice: str, *, user: str, admin: bool) -> Press:
        """Claim the decision and hand it to the agent (`claim` then `deliver`)."""
        claimed = await self.claim(approval_id, choice, user=user, admin=admin)
        if not claimed.ok or claimed.approval is None:
            return claimed
        return await self.deliver(claimed)

    async def deliver(self, claimed: Press) -> Press:
        assert claimed.approval is not None
        decision = {"choice": claimed.approval.choice, "by": claimed.approval.decided_by,
                    "expired": False}  # fmt: skip
        outbound = await self._deliver(claimed.approval, decision)
        return Press(True, claimed.notice, claimed.approval, outbound)

    async def claim(
        self, approval_id: str, choice: str, *, user: str, admin: bool, via: str | None = None
    ) -> Press:
        """Record the decision (first press wins); fast, so a button can be answered at once.
        `via`: the surface answering (default: the one the user's name says, see
        `approvals.surface_of`)."""
        via = via or approvals.surface_of(user)
        async with self.pool.connection() as conn:
            question = await approvals.get(conn, approval_id)
            if question is None:
                return Press(False, "This question is unknown.")
            if question.status != "pending":
                return Press(False, _closed(question), question)
            if user != question.requested_by and not admin:
                await audit.record(
                    conn, actor=user, action="approval.refused", subject=f"approval:{approval_id}"
                )
                return Press(False, "Only the person who asked, or an admin, may answer this.")
            if choice not in {c[0] for c in question.choices}:
                return Press(False, "That is not one of the choices.")
            link = question.link(choice)
            if link is not None:  # "View PR": the question stays open
                return Press(False, self.shown_link(link), question, link=True)
            decided = await approvals.decide(conn, approval_id, choice, user, admin=admin, via=via)
            if decided is None:  # someone else was first, or it just expired
                latest = await approvals.get(conn, approval_id)
                return Press(False, _closed(latest) if latest else "Already answered.", latest)
            await audit.record(
                conn, actor=user, action="approval.decided", subject=f"approval:{approval_id}",
                detail={"choice": choice, "via": via},
            )  # fmt: skip
        return Press(True, f"{decided.label(choice)} — noted.", decided)

    async def answer(
        self, approval_id: str, choice: str, *, user: str, admin: bool, via: str
    ) -> Press:
        """An answer from a surface that is not the question's own chat (the console): the
        same claim as a button press (first answer wins), then the question's message where
        it was asked says who chose what, and what the agent answers is said there too —
        both through the outbox, so whichever process serves that chat shows them."""
        claimed = await self.claim(approval_id, choice, user=user, admin=admin, via=via)
        if not claimed.ok or claimed.approval is None:
            return claimed
        question = claimed.approval
        async with self.pool.connection() as conn:
            if question.channel_ref:  # the message with the buttons: edited in place
                text = approvals.decided_text(question, user)
            else:  # shown where no reference is kept (a terminal): a line of its own
                text = f"✅ {question.label(question.choice)} — chosen by {user} in the {via}."
            await outbox.put_edit(
                conn, question.conversation, f"decided:{question.id}", text, question.channel_ref
            )
        delivered = await self.deliver(claimed)
        async with self.pool.connection() as conn:
            for reply in delivered.outbound:
                await outbox.put(
                    conn, question.conversation, reply.text,
                    approval=reply.approval.id if reply.approval else None,
                )  # fmt: skip
        return delivered

    async def expire_due(self) -> list[tuple[Approval, list[Outbound]]]:
        """Close questions past their time, and finish decisions a crash left undelivered."""
        async with self.pool.connection() as conn:
            expired = await approvals.expire_due(conn)
            stranded = await approvals.undelivered(conn, older_than_seconds=30)
        done = []
        for question in expired:
            outbound = await self._deliver(question, {"choice": None, "by": None, "expired": True})
            done.append((question, outbound))
        for question in stranded:
            if question.id not in {q.id for q in expired}:
                decision = {"choice": question.choice, "by": question.decided_by,
                            "expired": question.status == "expired"}  # fmt: skip
                done.append((question, await self._deliver(question, decision)))
        return done

    async def _deliver(self, question: Approval, decision: dict[str, Any]) -> list[Outbound]:
        _, graph = self.graphs
        state = await graph.ainvoke(
            Command(resume=decision),
            self._config(f"approval:{question.id}"),
            context=self.deps,
        )
        replies = []
        async with self.pool.connection() as conn:
            await approvals.mark_delivered(conn, question.id)
            for out in state.get("outbound", []):
                follow_up = None
                if out.get("choices"):  # the answer asks again
                    follow_up = await self._ask(
                        conn, question.conversation, out["agent"], out["text"], out["choices"],
                        out.get("question") or "question", question.requested_by,
                    )  # fmt: skip
                replies.append(
                    Outbound(out["text"], out["agent"], follow_up, bool(out.get("error")))
                )
        return replies

    async def open_question(self, approval_id: str) -> Approval | None:
        """The question, if it still waits for an answer (a channel shows its choices)."""
        async with self.pool.connection() as conn:
            question = await approvals.get(conn, approval_id)
        return question if question is not None and question.status == "pending" else None

    async def remember_message(self, approval_id: str, ref: dict[str, Any]) -> None:
        async with self.pool.connection() as conn:
            await approvals.set_channel_ref(conn, approval_id, ref)


def _closed(question: Approval) -> str:
    if question.status == "expired":
        return "This question has expired."
    who = question.decided_by or "someone"
    return f"Already answered: {question.label(question.choice)} by {who}."
