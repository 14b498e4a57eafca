"""The redelivery sweep: GitHub never redelivers a failed webhook on its own.

The App's hook deliveries API lists every attempt (newest first, cursor-paged). A delivery
id (`guid`, our `X-GitHub-Delivery`) that failed within the last three days, never
succeeded, and is not in our inbox is asked for again, once per failed attempt, and at most
`MAX_ATTEMPTS` times in all. One process in the fleet sweeps at a time (an advisory lock).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from githubkit.exception import RequestFailed
from githubkit.utils import UNSET
from psycopg_pool import AsyncConnectionPool

from app import audit
from app.github.client import GitHubApp
from app.github.once import first_time

log = logging.getLogger(__name__)
WINDOW = timedelta(days=3)
MAX_PAGES = 30
MAX_ATTEMPTS = 3  # failed attempts of one delivery after which we stop asking
_NEXT = re.compile(r'<[^>]*[?&]cursor=([^&>]+)[^>]*>;\s*rel="next"')


@dataclass
class Sweep:
    listed: int = 0
    redelivered: list[str] = field(default_factory=list)  # guids asked for again
    skipped: int = 0  # in the inbox already, succeeded later, or tried enough


async def sweep(app: GitHubApp, pool: AsyncConnectionPool, *, now: datetime | None = None) -> Sweep:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT pg_try_advisory_lock(hashtext('github:redelivery'))")
        row = await cur.fetchone()
        if not row or not row[0]:
            return Sweep()  # another process is sweeping
        try:
            return await _sweep(app, pool, (now or datetime.now(UTC)) - WINDOW)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext('github:redelivery'))")


async def _sweep(app: GitHubApp, pool: AsyncConnectionPool, since: datetime) -> Sweep:
    result = Sweep()
    failed: dict[str, list[dict[str, Any]]] = {}
    succeeded: set[str] = set()
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        response = await app.app.rest.apps.async_list_webhook_deliveries(
            per_page=100, cursor=cursor or UNSET
        )
        page = response.json()
        old = False
        for delivery in page:
            if _time(str(delivery["delivered_at"])) < since:
                old = True
                break
            result.listed += 1
            guid = str(delivery["guid"])
            if 200 <= int(delivery.get("status_code") or 0) < 300:
                succeeded.add(guid)
            else:
                failed.setdefault(guid, []).append(dict(delivery))
        match = _NEXT.search(response.headers.get("link", ""))
        if old or not page or match is None:
            break
        cursor = match.group(1)

    candidates = [guid for guid in failed if guid not in succeeded]
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT delivery_id FROM inbox WHERE source = 'github' AND delivery_id = ANY(%s)",
            (candidates,),
        )
        stored = {row[0] for row in await cur.fetchall()}
    for guid in candidates:
        attempts = failed[guid]  # newest first
        if guid in stored or len(attempts) > MAX_ATTEMPTS:
            result.skipped += 1
            continue
        latest = attempts[0]
        if not await first_time(pool, f"redeliver:{latest['id']}"):
            result.skipped += 1  # this failed attempt was asked for already
            continue
        try:
            await app.app.rest.apps.async_redeliver_webhook_delivery(int(latest["id"]))
        except RequestFailed as exc:
            log.warning("GitHub refused to redeliver %s: %s", guid, exc.response.status_code)
            continue
        async with pool.connection() as conn:
            await audit.record(
                conn, actor="persais", action="github.redelivery", subject=f"delivery:{guid}",
                detail={"event": latest.get("event"), "status_code": latest.get("status_code"),
                        "attempts": len(attempts)},
            )  # fmt: skip
        result.redelivered.append(guid)
    if result.redelivered:
        log.info("asked GitHub to redeliver %d failed deliveries", len(result.redelivered))
    return result


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
