"""The open questions about a Mechanic pull request (`pr:<job>`: [Deploy] [Abort]).

One per pull request per chat: the job's result and the admin chat's notice share it when
they land in the same chat. Once the pull request is deployed, merged, aborted or closed,
every one still open is closed where it was asked, and says what happened: pressing it
later answers "Already answered: deployed by …", and a chat start does not offer it again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from app import audit, outbox
from app.orchestrator.approvals import _COLUMNS, Approval


async def open_in(conn: AsyncConnection[Any], conversation: str, job_id: str) -> Approval | None:
    """The question about job `job_id`'s pull request still open in `conversation`."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {_COLUMNS} FROM approvals WHERE conversation = %s AND question = %s"
        " AND status = 'pending' AND expires_at > now() ORDER BY created_at LIMIT 1",
        (conversation, f"pr:{job_id}"),
    )
    row = await cur.fetchone()
    return None if row is None else Approval(**row)


async def close(conn: AsyncConnection[Any], number: int, what: str, by: str) -> list[Approval]:
    """Close every open question about pull request `number` (of any Mechanic job that
    opened it): recorded as decided (`what`, e.g. "deployed", by `by`) and already handed
    over, so the agent is not asked; each chat is told in place (its message edited, the
    buttons gone) or, where the channel keeps no reference, in a new line."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"UPDATE approvals SET status = 'decided', choice = %s, decided_by = %s,"
        f" decided_at = now(), delivered_at = now() WHERE status = 'pending'"
        f" AND question IN (SELECT 'pr:' || id FROM jobs WHERE pr_number = %s)"
        f" RETURNING {_COLUMNS}",
        (what, by, number),
    )
    closed = [Approval(**row) for row in await cur.fetchall()]
    said = f"Pull request #{number} {what} by {by}."
    for question in closed:
        if question.channel_ref:
            text = f"{question.prompt}\n\n✅ {said}"
        else:
            text = f"✅ {said} (its question {question.id} is closed.)"
        await outbox.put_edit(
            conn, question.conversation, f"closed:{question.id}", text, question.channel_ref
        )
        await audit.record(
            conn, actor=by, action="approval.closed", subject=f"approval:{question.id}",
            detail={"pr": number, "what": what},
        )  # fmt: skip
    return closed


@asynccontextmanager
async def asking(
    pool: AsyncConnectionPool, conversation: str, job_id: str
) -> AsyncIterator[Approval | None]:
    """Hold the right to ask about job `job_id`'s pull request in `conversation` (the job's
    result and the admin notice may race); yields the question already open there, if any,
    and then none is to be asked."""
    async with pool.connection() as conn, conn.transaction():
        key = f"pr-question:{conversation}:{job_id}"
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
        yield await open_in(conn, conversation, job_id)
