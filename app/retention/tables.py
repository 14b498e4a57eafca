"""The prune of Persais's own tables: each function is one step, and says how many rows it
removed (or, in a dry run, would remove).

What stays, and why:
- the inbox keeps open and dead deliveries forever, and closed ones `inbox_days` after they
  closed: the row is what makes a redelivered id a duplicate, and neither GitHub (3 days)
  nor Telegram (about a day) sends one again later than that;
- the outbox keeps what is not fully shown; a shown message stays `outbox_days` (a keyed
  message edited after that is said anew instead of edited);
- a question stays while pending, or decided and not yet handed to its agent, or still
  named by an outbox row; after `approvals_days` it goes with its graph thread
  (`approval:<id>`), and a late press on its old buttons hears "This question is unknown.";
- a stranger's refusal row goes when its window ended, at once if it counts no quiet
  refusal, else `refusals_days` later (the count their next audited refusal would report);
- an agent's state goes only when no kept release (and not the image) holds the agent and
  nothing was written to it for `agent_state_days`.
"""

from __future__ import annotations

from collections.abc import Mapping

from psycopg_pool import AsyncConnectionPool

from app.retention import batches
from app.retention.policy import Policy


async def _prune(
    pool: AsyncConnectionPool,
    table: str,
    key: str,
    candidates: str,
    params: Mapping[str, object],
    policy: Policy,
    dry_run: bool,
) -> int:
    if dry_run:
        return await batches.count(pool, candidates, params)
    return await batches.delete(pool, table, key, candidates, params, batch=policy.batch)


async def inbox(pool: AsyncConnectionPool, policy: Policy, *, dry_run: bool = False) -> int:
    candidates = (
        "SELECT id FROM inbox WHERE status IN ('processed', 'ignored')"
        " AND processed_at < now() - make_interval(secs => %(seconds)s)"
    )
    seconds = {"seconds": policy.inbox_days * 86400}
    return await _prune(pool, "inbox", "id", candidates, seconds, policy, dry_run)


async def outbox(pool: AsyncConnectionPool, policy: Policy, *, dry_run: bool = False) -> int:
    candidates = (
        "SELECT id FROM outbox WHERE delivered_version >= version"
        " AND updated_at < now() - make_interval(secs => %(seconds)s)"
    )
    seconds = {"seconds": policy.outbox_days * 86400}
    return await _prune(pool, "outbox", "id", candidates, seconds, policy, dry_run)


_CLOSED_APPROVALS = (
    "SELECT id FROM approvals a WHERE status IN ('decided', 'expired')"
    " AND delivered_at IS NOT NULL"
    " AND coalesce(decided_at, expires_at) < now() - make_interval(secs => %(seconds)s)"
    " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.approval = a.id)"
)


async def approvals(pool: AsyncConnectionPool, policy: Policy, *, dry_run: bool = False) -> int:
    """Closed questions, each with its LangGraph thread, in one transaction per batch."""
    params: dict[str, object] = {"seconds": policy.approvals_days * 86400}
    if dry_run:
        return await batches.count(pool, _CLOSED_APPROVALS, params)
    removed = 0
    while True:
        async with pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "DELETE FROM approvals WHERE id IN"  # noqa: S608 - constant text only
                f" ({_CLOSED_APPROVALS} LIMIT %(batch)s FOR UPDATE SKIP LOCKED) RETURNING id",
                {**params, "batch": policy.batch},
            )
            threads = [f"approval:{row[0]}" for row in await cur.fetchall()]
            cur = await conn.execute("SELECT to_regclass('checkpoints') IS NOT NULL")
            setup = await cur.fetchone()
            if threads and setup and setup[0]:
                for table in ("checkpoint_writes", "checkpoint_blobs", "checkpoints"):
                    await conn.execute(
                        f"DELETE FROM {table} WHERE thread_id = ANY(%s)",  # noqa: S608
                        (threads,),
                    )
        removed += len(threads)
        if len(threads) < policy.batch:
            return removed


async def refusals(pool: AsyncConnectionPool, policy: Policy, *, dry_run: bool = False) -> int:
    candidates = (
        "SELECT who FROM refusals WHERE since < now() - make_interval(secs => %(window)s)"
        " AND (refused = 1 OR since < now() - make_interval(secs => %(window)s + %(kept)s))"
    )
    params = {"window": policy.refusal_window_seconds, "kept": policy.refusals_days * 86400}
    return await _prune(pool, "refusals", "who", candidates, params, policy, dry_run)


async def agent_state(
    pool: AsyncConnectionPool, policy: Policy, kept_agents: set[str], *, dry_run: bool = False
) -> int:
    """`kept_agents`: every agent of a kept release and of the image (`run` finds them)."""
    candidates = (
        "SELECT agent, key FROM agent_state s WHERE agent <> ALL(%(kept)s)"
        " AND NOT EXISTS (SELECT 1 FROM agent_state r WHERE r.agent = s.agent"
        " AND r.updated_at >= now() - make_interval(secs => %(seconds)s))"
    )
    params = {"kept": sorted(kept_agents), "seconds": policy.agent_state_days * 86400}
    return await _prune(pool, "agent_state", "(agent, key)", candidates, params, policy, dry_run)
