"""Things Persais says on GitHub (or about it) once: a refusal to one comment, the notice of a
broken config file at one blob, news of one delivery. A retried delivery finds its key."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool


async def first_time(pool: AsyncConnectionPool, key: str) -> bool:
    """Claim `key`; False if it was claimed before (by this process or any other)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO github_notices (key) VALUES (%s) ON CONFLICT DO NOTHING RETURNING 1",
            (key,),
        )
        return await cur.fetchone() is not None


async def release(pool: AsyncConnectionPool, key: str) -> None:
    """Give `key` back: the work that claimed it failed before it was done, and a retried
    delivery should do it."""
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM github_notices WHERE key = %s", (key,))
