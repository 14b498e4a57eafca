"""The releases ledger: every release ever cut and every state it went through.

Both tables are append-only (the database refuses UPDATE and DELETE). A release's state is
its latest event; the release in service is the one with the most recent `live` event —
moving the pointer (a deploy going live, a rollback) is one more event, never an edit.
A release's grants (agent -> what its manifest asks for, `app.agents.grants`) are written
with it and never change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

# A release that may be gone back to: it was in service and nothing said it was bad.
GOOD = ("live", "superseded")


@dataclass(frozen=True)
class Release:
    id: int
    sha: str | None  # None: the agents the image (or checkout) was built with
    source: str  # "image" | "merge"
    repository: str
    pr_number: int | None
    job_id: str | None
    pressed_by: str
    conversation: str | None
    previous: int | None
    created_at: datetime
    status: str  # its latest event
    reason: str | None  # of its latest event
    since: datetime  # when its latest event happened
    grants: dict[str, Any] | None = None  # agent -> permissions; None: cut before grants were kept

    @property
    def granted(self) -> dict[str, Any]:
        """What the release grants: nothing when it was cut before grants were recorded."""
        return self.grants or {}

    @property
    def short(self) -> str:
        if self.source == "image":
            return f"image {self.sha[:12]}" if self.sha else "image"
        return (self.sha or "")[:12]

    def label(self) -> str:
        pull = f", PR #{self.pr_number}" if self.pr_number else ""
        return f"release {self.id} ({self.short}{pull})"


_SELECT = """
SELECT r.id, r.sha, r.source, r.repository, r.pr_number, r.job_id, r.pressed_by,
       r.conversation, r.previous, r.created_at, r.grants, e.status, e.reason, e.at AS since
FROM releases r
JOIN LATERAL (SELECT status, reason, at FROM release_events
              WHERE release = r.id ORDER BY id DESC LIMIT 1) e ON true
"""


async def _one(conn: AsyncConnection[Any], where: str, params: tuple[Any, ...]) -> Release | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_SELECT + where, params)
    row = await cur.fetchone()
    return None if row is None else Release(**row)


async def get(conn: AsyncConnection[Any], release_id: int) -> Release | None:
    return await _one(conn, "WHERE r.id = %s", (release_id,))


async def current(conn: AsyncConnection[Any]) -> Release | None:
    """The release in service: the one most recently made live, if it still is."""
    cur = await conn.execute(
        "SELECT release FROM release_events WHERE status = 'live' ORDER BY id DESC LIMIT 1"
    )
    row = await cur.fetchone()
    if row is None:
        return None
    release = await get(conn, int(row[0]))
    return release if release is not None and release.status == "live" else None


async def for_pull(conn: AsyncConnection[Any], repository: str, number: int) -> Release | None:
    return await _one(
        conn, "WHERE r.repository = %s AND r.pr_number = %s AND r.source = 'merge'",
        (repository, number),
    )  # fmt: skip


async def history(conn: AsyncConnection[Any], limit: int = 10) -> list[Release]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_SELECT + "ORDER BY r.id DESC LIMIT %s", (limit,))
    return [Release(**row) for row in await cur.fetchall()]


async def page(conn: AsyncConnection[Any], *, before: int | None, limit: int) -> list[Release]:
    """Newest first, the releases older than `before` (all, when None): keyset paging."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        _SELECT + "WHERE %s::bigint IS NULL OR r.id < %s ORDER BY r.id DESC LIMIT %s",
        (before, before, limit),
    )
    return [Release(**row) for row in await cur.fetchall()]


async def events(conn: AsyncConnection[Any], release: int) -> list[dict[str, Any]]:
    """Everything `release` went through, oldest first."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT status, actor, reason, at FROM release_events WHERE release = %s ORDER BY id",
        (release,),
    )
    return list(await cur.fetchall())


async def went_live(conn: AsyncConnection[Any]) -> list[Release]:
    """Every merge release that was ever in service, oldest first (whatever it is now)."""
    where = (
        "WHERE r.source = 'merge' AND EXISTS (SELECT 1 FROM release_events l"
        " WHERE l.release = r.id AND l.status = 'live') ORDER BY r.id"
    )
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_SELECT + where)
    return [Release(**row) for row in await cur.fetchall()]


async def previous_good(conn: AsyncConnection[Any], release: Release) -> Release | None:
    """The release to go back to from `release`: along the chain of releases each was cut
    on top of, the first that was in service and was not rolled back or failed."""
    seen = {release.id}
    step = release.previous
    while step is not None and step not in seen:
        seen.add(step)
        candidate = await get(conn, step)
        if candidate is None:
            return None
        if candidate.status in GOOD:
            return candidate
        step = candidate.previous
    return None


async def image(
    conn: AsyncConnection[Any], *, repository: str, commit: str | None, grants: dict[str, Any]
) -> Release:
    """The release of the agents the image was built with: the first one in service, made
    the first time anything is deployed (so there is always something to roll back to).
    Its grants are its manifests' (the image shipped through review and CI)."""
    await conn.execute(
        "INSERT INTO releases (sha, source, repository, pressed_by, grants) VALUES (%s, 'image',"
        " %s, 'persais', %s) ON CONFLICT DO NOTHING",
        (commit, repository, Jsonb(grants)),
    )
    found = await _one(conn, "WHERE r.source = 'image'", ())
    if found is not None:
        return found
    cur = await conn.execute("SELECT id FROM releases WHERE source = 'image'")
    row = await cur.fetchone()
    assert row is not None
    await event(conn, int(row[0]), "live", actor="persais", reason="the image's own agents")
    found = await get(conn, int(row[0]))
    assert found is not None
    return found


async def cut(
    conn: AsyncConnection[Any],
    *,
    sha: str,
    repository: str,
    pr_number: int,
    job_id: str | None,
    pressed_by: str,
    conversation: str | None,
    previous: int | None,
    grants: dict[str, Any],
) -> Release:
    cur = await conn.execute(
        "INSERT INTO releases (sha, source, repository, pr_number, job_id, pressed_by,"
        " conversation, previous, grants) VALUES (%s, 'merge', %s, %s, %s, %s, %s, %s, %s)"
        " RETURNING id",
        (sha, repository, pr_number, job_id, pressed_by, conversation, previous, Jsonb(grants)),
    )
    row = await cur.fetchone()
    assert row is not None
    await event(conn, int(row[0]), "cut", actor=pressed_by)
    release = await get(conn, int(row[0]))
    assert release is not None
    return release


async def event(
    conn: AsyncConnection[Any], release: int, status: str, *, actor: str, reason: str | None = None
) -> None:
    await conn.execute(
        "INSERT INTO release_events (release, status, actor, reason) VALUES (%s, %s, %s, %s)",
        (release, status, actor, reason),
    )
