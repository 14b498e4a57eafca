"""`installation` and `installation_repositories`: keep the installations table current."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from app import audit
from app.routing import Context, Event, Router

router = Router()

_UPSERT = """
INSERT INTO installations (id, account_login, account_type, target_type, repository_selection,
                           permissions, events, suspended_at, deleted_at, updated_at)
VALUES (%(id)s, %(login)s, %(type)s, %(target_type)s, %(selection)s,
        %(permissions)s, %(events)s, %(suspended_at)s, NULL, now())
ON CONFLICT (id) DO UPDATE SET
    account_login = EXCLUDED.account_login, account_type = EXCLUDED.account_type,
    target_type = EXCLUDED.target_type, repository_selection = EXCLUDED.repository_selection,
    permissions = EXCLUDED.permissions, events = EXCLUDED.events,
    suspended_at = EXCLUDED.suspended_at, deleted_at = NULL, updated_at = now()
"""

_ADD_REPO = """
INSERT INTO installation_repositories (installation_id, repository_id, full_name, private)
VALUES (%s, %s, %s, %s)
ON CONFLICT (installation_id, repository_id) DO UPDATE SET full_name = EXCLUDED.full_name,
    private = EXCLUDED.private
"""


def _row(installation: dict[str, Any]) -> dict[str, Any]:
    account = installation.get("account") or {}
    return {
        "id": installation["id"],
        "login": account.get("login") or account.get("slug") or "?",
        "type": account.get("type") or "Enterprise",
        "target_type": installation.get("target_type"),
        "selection": installation.get("repository_selection"),
        "permissions": Jsonb(installation.get("permissions") or {}),
        "events": Jsonb(installation.get("events") or []),
        "suspended_at": installation.get("suspended_at"),
    }


@router.register("installation")
async def installation_changed(event: Event, ctx: Context) -> None:
    installation = event.payload["installation"]
    async with ctx.pool.connection() as conn, conn.transaction():
        if event.action == "deleted":
            await conn.execute(
                "UPDATE installations SET deleted_at = now(), updated_at = now() WHERE id = %s",
                (installation["id"],),
            )
        else:
            await conn.execute(_UPSERT, _row(installation))
            for repo in event.payload.get("repositories") or []:
                await conn.execute(
                    _ADD_REPO,
                    (installation["id"], repo["id"], repo["full_name"], bool(repo.get("private"))),
                )
        await audit.record(
            conn,
            actor=f"github:{(event.payload.get('sender') or {}).get('login', '?')}",
            action=f"installation.{event.action}",
            subject=f"installation:{installation['id']}",
            detail={"delivery": event.delivery_id},
        )


@router.register("installation_repositories")
async def repositories_changed(event: Event, ctx: Context) -> None:
    installation = event.payload["installation"]
    async with ctx.pool.connection() as conn, conn.transaction():
        await conn.execute(_UPSERT, _row(installation))
        for repo in event.payload.get("repositories_added") or []:
            await conn.execute(
                _ADD_REPO,
                (installation["id"], repo["id"], repo["full_name"], bool(repo.get("private"))),
            )
        removed = [repo["id"] for repo in event.payload.get("repositories_removed") or []]
        if removed:
            await conn.execute(
                "DELETE FROM installation_repositories"
                " WHERE installation_id = %s AND repository_id = ANY(%s)",
                (installation["id"], removed),
            )
