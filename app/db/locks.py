"""Postgres advisory locks: one holder at a time of a named thing, across processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg_pool import AsyncConnectionPool


@asynccontextmanager
async def held(pool: AsyncConnectionPool, key: str) -> AsyncIterator[None]:
    """Wait for, then hold, the session-level advisory lock named `key` on one dedicated
    connection; it is released on every way out (and by Postgres if the process dies)."""
    async with pool.connection() as conn:
        await conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
        try:
            yield
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
