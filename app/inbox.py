"""The inbox: every verified delivery, stored once, with where it is in its processing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from app import audit

STATUSES = ("received", "processed", "ignored", "failed", "dead")
SOURCES = ("github", "telegram", "console")  # the inbox's CHECK (migrations 0001, 0017)
REPLAYABLE = ("dead", "failed")


@dataclass(frozen=True)
class Delivery:
    """A verified webhook delivery as the ingress saw it. `body` is the raw JSON text."""

    source: str
    delivery_id: str
    event: str
    action: str | None
    body: str
    # Deliveries with the same lock are processed one at a time, in order of arrival
    # (one Telegram chat, say). None: no ordering constraint.
    lock: str | None = None


@dataclass(frozen=True)
class StoredDelivery:
    id: int
    source: str
    delivery_id: str
    event: str
    action: str | None
    payload: dict[str, Any]
    status: str
    attempts: int
    handled_count: int
    last_error: str | None
    received_at: datetime
    processed_at: datetime | None
    processed_by: str | None


@dataclass(frozen=True)
class Attempt:
    """A delivery being processed: what it is and which attempt this is (1 = first)."""

    id: int
    source: str
    delivery_id: str
    event: str
    action: str | None
    attempt: int


async def begin_attempt(conn: AsyncConnection[Any], inbox_id: int) -> Attempt | None:
    """Count an attempt at an open delivery; None when it is gone or already closed."""
    cur = await conn.execute(
        "UPDATE inbox SET attempts = attempts + 1"
        " WHERE id = %s AND status NOT IN ('processed', 'ignored')"
        " RETURNING id, source, delivery_id, event, action, attempts",
        (inbox_id,),
    )
    row = await cur.fetchone()
    return None if row is None else Attempt(*row)


async def payload(conn: AsyncConnection[Any], inbox_id: int) -> dict[str, Any]:
    cur = await conn.execute("SELECT payload FROM inbox WHERE id = %s", (inbox_id,))
    row = await cur.fetchone()
    return {} if row is None else dict(row[0])


async def finish(conn: AsyncConnection[Any], inbox_id: int, status: str, worker: str) -> None:
    """Close a delivery as processed or ignored.

    `handled_count` counts every completed run, even one that finds the row already closed:
    it is how a second processing of one delivery would show.
    """
    await conn.execute(
        "UPDATE inbox SET handled_count = handled_count + 1, last_error = NULL,"
        " status = CASE WHEN status IN ('processed', 'ignored') THEN status ELSE %s END,"
        " processed_at = coalesce(processed_at, now()),"
        " processed_by = coalesce(processed_by, %s)"
        " WHERE id = %s",
        (status, worker, inbox_id),
    )


async def fail(conn: AsyncConnection[Any], inbox_id: int, error: str, *, dead: bool) -> None:
    await conn.execute(
        "UPDATE inbox SET status = %s, last_error = %s WHERE id = %s",
        ("dead" if dead else "failed", error[:4000], inbox_id),
    )


async def reopen(
    conn: AsyncConnection[Any], inbox_id: int, *, of: tuple[str, ...] = REPLAYABLE
) -> bool:
    """Put a dead (or failed) delivery back to be processed again from a clean count."""
    cur = await conn.execute(
        "UPDATE inbox SET status = 'received', attempts = 0, last_error = NULL"
        " WHERE id = %s AND status = ANY(%s)",
        (inbox_id, list(of)),
    )
    return cur.rowcount == 1


class Requeue(Protocol):
    """Where a reopened delivery goes to be processed again (the worker's queue)."""

    async def enqueue_many(
        self, conn: AsyncConnection[Any], deliveries: list[tuple[int, str | None]]
    ) -> None: ...


async def replay(
    conn: AsyncConnection[Any], queue: Requeue, inbox_id: int, *, actor: str,
    of: tuple[str, ...] = REPLAYABLE, detail: dict[str, Any] | None = None,
) -> bool:  # fmt: skip
    """Reopen a delivery in one of the states `of` and queue it again for the worker,
    audited as `inbox.replay`, all in one transaction. False, and nothing changed, when it
    is in no such state (so replaying twice queues it once)."""
    async with conn.transaction():
        if not await reopen(conn, inbox_id, of=of):
            return False
        await queue.enqueue_many(conn, [(inbox_id, None)])
        await audit.record(
            conn, actor=actor, action="inbox.replay", subject=f"inbox:{inbox_id}", detail=detail
        )
    return True


async def listing(
    conn: AsyncConnection[Any], *, status: str | None = None, limit: int = 50
) -> list[StoredDelivery]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT id, source, delivery_id, event, action, payload, status, attempts,"
        " handled_count, last_error, received_at, processed_at, processed_by"
        " FROM inbox WHERE (%(status)s::text IS NULL OR status = %(status)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"status": status, "limit": limit},
    )
    return [StoredDelivery(**row) for row in await cur.fetchall()]


OPEN_STATUSES = ("received", "failed", "dead")


async def open_counts(conn: AsyncConnection[Any]) -> dict[str, int]:
    """How many deliveries wait, wait to be retried, or are parked as dead (index-only)."""
    cur = await conn.execute(
        "SELECT status, count(*) FROM inbox"
        " WHERE status IN ('received', 'failed', 'dead') GROUP BY status"
    )
    found = {str(status): int(n) for status, n in await cur.fetchall()}
    return {status: found.get(status, 0) for status in OPEN_STATUSES}
