"""LangGraph's checkpoints pruned to what each thread needs to resume.

A thread resumes from its latest checkpoint (per namespace: a subgraph has its own),
that checkpoint's pending writes (an `interrupt()` waiting for its answer is one), and the
channel values it names in `channel_versions`, stored once per version in
`checkpoint_blobs`. Everything older goes: earlier checkpoints, their writes, and blob
versions no longer named.

A graph may be writing a newer checkpoint meanwhile: only what is older than the latest
seen is removed (checkpoint ids sort by time, channel versions count up), so a checkpoint
being written never loses its writes or blobs; an unchanged channel's version is the one
the latest already names, and kept. Persais reads no thread's history.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

THREADS_PER_BATCH = 200

# Threads (and namespaces) holding more than one checkpoint, in key order after a cursor.
_THREADS = """
SELECT thread_id, checkpoint_ns, max(checkpoint_id), count(*) - 1
FROM checkpoints WHERE (thread_id, checkpoint_ns) > (%(thread)s, %(ns)s)
GROUP BY thread_id, checkpoint_ns
ORDER BY thread_id, checkpoint_ns LIMIT %(limit)s
"""

_LATEST = "WITH latest (thread_id, checkpoint_ns, checkpoint_id) AS (SELECT * FROM unnest(%(threads)s::text[], %(nss)s::text[], %(ids)s::text[]))"  # noqa: E501

_WRITES = f"""{_LATEST}
DELETE FROM checkpoint_writes WHERE ctid IN (
    SELECT w.ctid FROM checkpoint_writes w JOIN latest l
    ON w.thread_id = l.thread_id AND w.checkpoint_ns = l.checkpoint_ns
    AND w.checkpoint_id < l.checkpoint_id LIMIT %(rows)s)
"""  # noqa: S608 - constant text only

# The version's counter is the part before the dot ("00…07.0.1234" or a plain integer).
_BLOBS = f"""{_LATEST}
DELETE FROM checkpoint_blobs WHERE ctid IN (
    SELECT b.ctid FROM checkpoint_blobs b JOIN latest l
    ON b.thread_id = l.thread_id AND b.checkpoint_ns = l.checkpoint_ns
    JOIN checkpoints c ON c.thread_id = l.thread_id AND c.checkpoint_ns = l.checkpoint_ns
    AND c.checkpoint_id = l.checkpoint_id
    WHERE c.checkpoint -> 'channel_versions' ? b.channel
    AND split_part(b.version, '.', 1)::numeric
        < split_part(c.checkpoint -> 'channel_versions' ->> b.channel, '.', 1)::numeric
    LIMIT %(rows)s)
"""  # noqa: S608 - constant text only

_CHECKPOINTS = f"""{_LATEST}
DELETE FROM checkpoints WHERE ctid IN (
    SELECT c.ctid FROM checkpoints c JOIN latest l
    ON c.thread_id = l.thread_id AND c.checkpoint_ns = l.checkpoint_ns
    AND c.checkpoint_id < l.checkpoint_id LIMIT %(rows)s)
"""  # noqa: S608 - constant text only


async def prune(pool: AsyncConnectionPool, *, batch: int = 1000, dry_run: bool = False) -> int:
    """Remove what no thread needs to resume, at most `batch` rows per statement; the number
    of checkpoints removed."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT to_regclass('checkpoints') IS NOT NULL")
        row = await cur.fetchone()
    if not (row and row[0]):  # conversations never started here: nothing to prune
        return 0
    removed = 0
    after = ("", "")
    while True:
        async with pool.connection() as conn:
            cur = await conn.execute(
                _THREADS, {"thread": after[0], "ns": after[1], "limit": THREADS_PER_BATCH}
            )
            found = await cur.fetchall()
        if not found:
            return removed
        after = (found[-1][0], found[-1][1])
        older = [(t, ns, latest) for t, ns, latest, n in found if n > 0]
        if dry_run:
            removed += sum(int(n) for *_, n in found)
        elif older:
            async with pool.connection() as conn:
                removed += await _prune_threads(conn, older, batch)
        if len(found) < THREADS_PER_BATCH:
            return removed


async def _prune_threads(
    conn: AsyncConnection[Any], latest: list[tuple[str, str, str]], batch: int
) -> int:
    """Writes, then blobs, then checkpoints, `batch` rows per statement, each its
    own transaction (a thread a year old may hold tens of thousands). Stopping between two
    leaves only rows no thread needs, for the next run."""
    params = {
        "threads": [t for t, _, _ in latest],
        "nss": [ns for _, ns, _ in latest],
        "ids": [i for _, _, i in latest],
        "rows": batch,
    }
    removed = 0
    for statement in (_WRITES, _BLOBS, _CHECKPOINTS):
        while True:
            cur = await conn.execute(statement, params)
            if statement is _CHECKPOINTS:
                removed += cur.rowcount
            if cur.rowcount < batch:
                break
    return removed
