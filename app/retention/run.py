"""One retention run: every step in turn, each on its own, its count logged and returned.

A step that fails (a lock timeout, a table another version dropped) is logged with its
traceback and the run goes on to the next: a broken outbox prune must not leave the
inbox growing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from app.retention import checkpoints, queue_jobs, releases, tables
from app.retention.policy import Place, Policy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    step: str
    removed: int  # rows (folders, for "release folders"); in a dry run, would be removed
    seconds: float
    error: str | None = None


async def run(
    pool: AsyncConnectionPool,
    policy: Policy,
    place: Place,
    *,
    job_manager: Any | None = None,
    dry_run: bool = False,
) -> list[Outcome]:
    """`job_manager`: procrastinate's (None: the queue's jobs are left alone)."""

    async def agent_state() -> int:
        async with pool.connection() as conn:
            kept = await releases.kept(conn, policy.releases_keep)
        agents = kept.agents()
        if agents is None:
            log.info("retention: agent state kept (a kept release predates recorded grants)")
            return 0
        agents |= releases.image_agents(place.image_agents)
        return await tables.agent_state(pool, policy, agents, dry_run=dry_run)

    async def folders() -> int:
        async with pool.connection() as conn:
            kept = await releases.kept(conn, policy.releases_keep)
        keep = kept.shas | ({place.pinned_release} if place.pinned_release else set())
        return releases.prune_folders(place.home, keep, dry_run=dry_run)

    steps: list[tuple[str, Callable[[], Awaitable[int]]]] = [
        ("inbox", lambda: tables.inbox(pool, policy, dry_run=dry_run)),
        ("outbox", lambda: tables.outbox(pool, policy, dry_run=dry_run)),
        ("approvals", lambda: tables.approvals(pool, policy, dry_run=dry_run)),
        ("refusals", lambda: tables.refusals(pool, policy, dry_run=dry_run)),
        ("checkpoints", lambda: checkpoints.prune(pool, batch=policy.batch, dry_run=dry_run)),
        ("agent state", agent_state),
        ("release folders", folders),
    ]
    if job_manager is not None:
        steps.insert(1, ("queue jobs", lambda: queue_jobs.prune(
            pool, job_manager, policy, dry_run=dry_run)))  # fmt: skip
    return [await _step(name, step, dry_run) for name, step in steps]


async def _step(name: str, step: Callable[[], Awaitable[int]], dry_run: bool) -> Outcome:
    started = time.monotonic()
    try:
        removed = await step()
    except Exception as exc:  # one step's edge: log it, and the run goes on
        log.exception("retention: pruning %s failed", name)
        return Outcome(name, 0, time.monotonic() - started, f"{type(exc).__name__}: {exc}")
    seconds = time.monotonic() - started
    verb = "would remove" if dry_run else "removed"
    log.info("retention: %s %d from %s in %.2f s", verb, removed, name, seconds)
    return Outcome(name, removed, seconds)
