"""The `jobs` rows, as the chat side and the worker side read them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class Job:
    id: str
    conversation: str
    requested_by: str
    request: str
    status: str
    stage: str | None
    attempts: int
    abort_requested_at: datetime | None
    abort_requested_by: str | None
    template_only: bool
    given_plan: dict[str, Any] | None
    plan: dict[str, Any] | None
    branch: str | None
    pr_number: int | None
    pr_url: str | None
    rounds: int
    cost: Any
    approval: str | None
    message: str | None
    kind: str = "create"  # create | fix (Aider on an open pull request's branch)
    target_pr: int | None = None


COLUMNS = ", ".join(Job.__dataclass_fields__)


async def get(conn: AsyncConnection[Any], job_id: str) -> Job | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {COLUMNS} FROM jobs WHERE id = %s", (job_id,))
    row = await cur.fetchone()
    return None if row is None else Job(**row)


async def latest_abortable(conn: AsyncConnection[Any], conversation: str) -> Job | None:
    """The conversation's newest job that /abort can still stop or withdraw."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE conversation = %s"
        " AND status IN ('queued', 'running', 'opened') ORDER BY created_at DESC LIMIT 1",
        (conversation,),
    )
    row = await cur.fetchone()
    return None if row is None else Job(**row)


async def mark_told(conn: AsyncConnection[Any], job_id: str) -> None:
    """The job's ending is in the outbox (a chat waiting for it may leave)."""
    await conn.execute(
        "UPDATE jobs SET told_at = coalesce(told_at, now()) WHERE id = %s", (job_id,)
    )
