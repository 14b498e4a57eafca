"""Deleting in bounded batches, each its own transaction: no lock outlives one batch, and
rows another process holds right now (a message being shown) are skipped, not waited for."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool


async def count(pool: AsyncConnectionPool, candidates: str, params: Mapping[str, Any]) -> int:
    """How many rows `candidates` (a SELECT) finds: what a dry run would remove."""
    async with pool.connection() as conn:
        cur = await conn.execute(f"SELECT count(*) FROM ({candidates}) c", params)  # noqa: S608
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def delete(
    pool: AsyncConnectionPool,
    table: str,
    key: str,
    candidates: str,
    params: Mapping[str, Any],
    *,
    batch: int,
) -> int:
    """Delete the rows of `table` whose `key` (a column, or columns in parentheses) the
    SELECT `candidates` names, `batch` at a time, until a batch comes back short."""
    removed = 0
    while True:
        async with pool.connection() as conn, conn.transaction():
            gone = await delete_batch(conn, table, key, candidates, params, batch=batch)
        removed += gone
        if gone < batch:
            return removed


async def delete_batch(
    conn: AsyncConnection[Any],
    table: str,
    key: str,
    candidates: str,
    params: Mapping[str, Any],
    *,
    batch: int,
) -> int:
    cur = await conn.execute(
        f"DELETE FROM {table} WHERE {key} IN"  # noqa: S608 - our own identifiers only
        f" ({candidates} LIMIT %(batch)s FOR UPDATE SKIP LOCKED)",
        {**params, "batch": batch},
    )
    return cur.rowcount
