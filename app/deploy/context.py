"""What every part of a deploy shares: the collaborators (settings, pool, registry, the
release this process runs, memory, the queue), the refusal the chat is told, and the two
reads both the chat side and the worker side make (the job behind a pull request, and the
audit of a refused grant)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg_pool import AsyncConnectionPool

from app import audit
from app.agents.grants import Change
from app.agents.registry import Registry
from app.deploy.here import ThisProcess
from app.orchestrator.approvals import Approval
from app.settings import Settings

if TYPE_CHECKING:
    from app.memory.service import Memory

Defer = Callable[..., Awaitable[None]]  # DeliveryQueue.defer_deploy
Ask = Callable[..., Awaitable[Approval]]  # Orchestrator.ask


class Refused(Exception):
    """A deploy that must not happen; the message says why, for the chat."""


@dataclass
class Context:
    settings: Settings
    pool: AsyncConnectionPool
    registry: Registry
    here: ThisProcess
    defer: Defer | None  # None: a process without the worker queue
    ask: Ask
    build_commit: str | None
    memory: Memory | None
    forge: Callable[[], Any]  # the forge of the home repository, composed when needed

    @property
    def repository(self) -> str:
        return self.settings.home_repo or "persais"

    async def job_for(self, number: int) -> tuple[str, str, str | None] | None:
        """The latest Mechanic job that opened (or deployed) pull request `number`: its id,
        who asked for it, and the head it validated."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, requested_by, head_sha FROM jobs WHERE pr_number = %s"
                " AND status IN ('opened', 'deployed') ORDER BY updated_at DESC LIMIT 1",
                (number,),
            )
            row = await cur.fetchone()
        return (str(row[0]), str(row[1]), row[2]) if row else None

    async def refused_grants(self, number: int, by: str, found: list[Change]) -> None:
        detail = {"why": "grants", "grants": [str(c) for c in found]}
        async with self.pool.connection() as conn:
            await audit.record(
                conn, actor=by, action="deploy.refused", subject=f"pr:{number}", detail=detail
            )
