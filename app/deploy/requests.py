"""Queueing a deploy, rollback or revert for a worker — one way for every surface.

The chat's [Deploy], `/deploy`, [Roll back] and [Open revert PR] and the console's buttons all
defer the same procrastinate task (`persais.deploy`, run by `Deployments.run`) and write the
same audit entry (`<action>.requested`), in one transaction. Light on purpose: the web-only
process (the console) imports it without the agents or LangGraph.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from app import audit

Defer = Callable[..., Awaitable[None]]  # DeliveryQueue.defer_deploy

# Where a request asked from the console reports: no channel shows these conversations; the
# console's Releases page reads their outbox rows (progress and result) instead.
CONSOLE_PREFIX = "console:"


def console_conversation(person: str) -> str:
    return f"{CONSOLE_PREFIX}{person}"


async def queue(
    pool: AsyncConnectionPool,
    defer: Defer,
    action: str,
    subject: int,
    *,
    by: str,
    conversation: str,
    admin: bool = False,
    **detail: Any,
) -> str:
    """Defer one request and audit it as asked; its request id (the key of what it says)."""
    rid = secrets.token_hex(4)
    async with pool.connection() as conn, conn.transaction():
        await defer(
            conn, action=action, subject=subject, by=by, conversation=conversation, rid=rid,
            admin=admin,
        )  # fmt: skip
        await audit.record(conn, actor=by, action=f"{action}.requested",
                           subject=f"{action}:{subject}",
                           detail={"request": rid, **detail})  # fmt: skip
    return rid
