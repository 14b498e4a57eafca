"""procrastinate's finished jobs and their events, removed with its own tool
(`JobManager.delete_old_jobs`, what its builtin `remove_old_jobs` task runs).

Jobs that succeeded, failed, were cancelled or aborted go `jobs_days` after their last
event; a failed delivery's story stays in the inbox (dead, replayable). The periodic
task's last defer names its job: procrastinate's own trigger lets go of it on delete. The library's
query is one statement: run every hour (the default cron) it removes an hour's jobs.
"""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from app.retention.policy import Policy

FINAL = "('succeeded', 'failed', 'cancelled', 'aborted')"

# The library's own selection (sql/queries.sql, delete_old_jobs), counted for a dry run.
_OLD = f"""
SELECT count(*) FROM (
    SELECT DISTINCT ON (job.id) job.status, event.at AS latest_at
    FROM procrastinate_jobs job JOIN procrastinate_events event ON job.id = event.job_id
    ORDER BY job.id, event.at DESC
) job
WHERE job.status IN {FINAL} AND latest_at < now() - make_interval(hours => %(hours)s)
"""  # noqa: S608 - constant text only


async def prune(
    pool: AsyncConnectionPool, job_manager: Any, policy: Policy, *, dry_run: bool = False
) -> int:
    hours = max(1, round(policy.jobs_days * 24))
    if dry_run:
        async with pool.connection() as conn:
            cur = await conn.execute(_OLD, {"hours": hours})
            row = await cur.fetchone()
        return int(row[0]) if row else 0
    async with pool.connection() as conn:
        before = await _finished(conn)
    await job_manager.delete_old_jobs(
        nb_hours=hours, include_failed=True, include_cancelled=True, include_aborted=True
    )
    async with pool.connection() as conn:
        after = await _finished(conn)
    return max(0, before - after)


async def _finished(conn: Any) -> int:
    query = f"SELECT count(*) FROM procrastinate_jobs WHERE status IN {FINAL}"  # noqa: S608
    cur = await conn.execute(query)
    row = await cur.fetchone()
    return int(row[0]) if row else 0
