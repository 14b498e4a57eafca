"""Where the `state` capability keeps each agent's key-value namespace: the `agent_state`
table in Postgres (`PostgresState`), or a dict for generated tests (`MemoryState`). Both hold
an agent to the same caps; the broker (`app.agents.capabilities`) checks keys and value sizes
before a store is asked."""

from __future__ import annotations

import json
from typing import Any, Protocol

from app.agents.sdk import CapabilityError

STATE_KEY_MAX = 200
STATE_VALUE_MAX = 64 * 1024
STATE_TOTAL_MAX = 1024 * 1024
STATE_KEYS_MAX = 1000


class StateStore(Protocol):
    async def get(self, agent: str, key: str) -> Any | None: ...
    async def put(self, agent: str, key: str, value: Any, size: int) -> None: ...
    async def delete(self, agent: str, key: str) -> None: ...
    async def keys(self, agent: str) -> list[str]: ...


class MemoryState:
    """`StateStore` in a dict, for generated tests (which have no database)."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], tuple[Any, int]] = {}

    async def get(self, agent: str, key: str) -> Any | None:
        found = self.data.get((agent, key))
        return None if found is None else found[0]

    async def put(self, agent: str, key: str, value: Any, size: int) -> None:
        mine = {k: v for k, v in self.data.items() if k[0] == agent and k[1] != key}
        _check_totals(len(mine), sum(s for _, s in mine.values()), size)
        self.data[(agent, key)] = (json.loads(json.dumps(value)), size)

    async def delete(self, agent: str, key: str) -> None:
        self.data.pop((agent, key), None)

    async def keys(self, agent: str) -> list[str]:
        return sorted(k for a, k in self.data if a == agent)


def _check_totals(other_keys: int, other_bytes: int, size: int) -> None:
    if other_keys + 1 > STATE_KEYS_MAX:
        raise CapabilityError(f"state holds at most {STATE_KEYS_MAX} keys")
    if other_bytes + size > STATE_TOTAL_MAX:
        raise CapabilityError(f"state holds at most {STATE_TOTAL_MAX} bytes")


class PostgresState:
    """`StateStore` in the `agent_state` table."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def get(self, agent: str, key: str) -> Any | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT value FROM agent_state WHERE agent = %s AND key = %s", (agent, key)
            )
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def put(self, agent: str, key: str, value: Any, size: int) -> None:
        from psycopg.types.json import Jsonb

        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('agent_state:' || %s))", (agent,)
            )
            cur = await conn.execute(
                "SELECT count(*), coalesce(sum(bytes), 0) FROM agent_state"
                " WHERE agent = %s AND key <> %s",
                (agent, key),
            )
            row = await cur.fetchone()
            assert row is not None
            _check_totals(int(row[0]), int(row[1]), size)
            await conn.execute(
                "INSERT INTO agent_state (agent, key, value, bytes) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (agent, key) DO UPDATE SET value = EXCLUDED.value,"
                " bytes = EXCLUDED.bytes, updated_at = now()",
                (agent, key, Jsonb(value), size),
            )

    async def delete(self, agent: str, key: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "DELETE FROM agent_state WHERE agent = %s AND key = %s", (agent, key)
            )

    async def keys(self, agent: str) -> list[str]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT key FROM agent_state WHERE agent = %s ORDER BY key", (agent,)
            )
            return [row[0] for row in await cur.fetchall()]
