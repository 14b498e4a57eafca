"""A connection pool on a test database, configured as the service's (`app.runtime`):
every connection autocommits, and a transaction is always an explicit `conn.transaction()`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg_pool import AsyncConnectionPool


async def _autocommit(conn: Any) -> None:
    await conn.set_autocommit(True)


@asynccontextmanager
async def open_pool(conninfo: str, max_size: int = 4) -> AsyncIterator[AsyncConnectionPool]:
    pool = AsyncConnectionPool(
        conninfo, min_size=1, max_size=max_size, configure=_autocommit, open=False
    )
    await pool.open(wait=True)
    try:
        yield pool
    finally:
        await pool.close()
