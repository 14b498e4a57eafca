"""One Mechanic job per repository at a time, across processes: a Postgres advisory lock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from psycopg_pool import AsyncConnectionPool


def repository_lock(
    pool: AsyncConnectionPool, repository: str
) -> Callable[[], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def hold() -> AsyncIterator[None]:
        # A session-level lock on one dedicated connection, released on every path out.
        async with pool.connection() as conn:
            await conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"repo:{repository}",))
            try:
                yield
            finally:
                await conn.execute(
                    "SELECT pg_advisory_unlock(hashtext(%s))", (f"repo:{repository}",)
                )

    return hold
