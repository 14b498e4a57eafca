"""One Mechanic job per repository at a time, across processes: a Postgres advisory lock."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from psycopg_pool import AsyncConnectionPool

from app.db import locks


def repository_lock(
    pool: AsyncConnectionPool, repository: str
) -> Callable[[], AbstractAsyncContextManager[None]]:
    def hold() -> AbstractAsyncContextManager[None]:
        return locks.held(pool, f"repo:{repository}")

    return hold
