"""The outbox: what Persais has to say in a conversation, from whichever process.

A Mechanic job runs in a worker, but the person may be in `persais chat` (another process)
or in Telegram. The job writes here; the process that serves the conversation shows it.
A row with a `key` is one message edited in place (a job's progress): `put` bumps its
version, and a channel shows only the latest version it has not shown yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool


@dataclass(frozen=True)
class Note:
    id: int
    conversation: str
    key: str | None
    text: str
    approval: str | None
    version: int
    channel_ref: dict[str, Any] | None
    links: list[list[str]] | None = None  # [[label, url], ...]: link buttons, no question


async def put(
    conn: AsyncConnection[Any],
    conversation: str,
    text: str,
    *,
    key: str | None = None,
    approval: str | None = None,
    links: list[tuple[str, str]] | None = None,
    replace: bool = True,
) -> None:
    """Say `text` in `conversation`; with `key`, replace what was said under that key
    (unless `replace` is False: then what was said stays). `links`: (label, url) buttons
    under it, for a message that asks nothing."""
    values = (conversation, key, text[:20_000], approval,
              Jsonb([list(link) for link in links]) if links else None)  # fmt: skip
    if not replace:
        await conn.execute(
            "INSERT INTO outbox (conversation, key, text, approval, links)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
            values,
        )
        return
    await conn.execute(
        "INSERT INTO outbox (conversation, key, text, approval, links)"
        " VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (key) DO UPDATE SET text = EXCLUDED.text, approval = EXCLUDED.approval,"
        " links = EXCLUDED.links, version = outbox.version + 1, updated_at = now()"
        " WHERE (outbox.text, outbox.approval) IS DISTINCT FROM (EXCLUDED.text, EXCLUDED.approval)",
        values,
    )


async def put_edit(
    conn: AsyncConnection[Any],
    conversation: str,
    key: str,
    text: str,
    channel_ref: dict[str, Any] | None,
) -> None:
    """Replace a message shown before, where its channel said it is (`channel_ref`, as
    that channel gave it); with no reference, say `text` as a new message."""
    await conn.execute(
        "INSERT INTO outbox (conversation, key, text, channel_ref) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (key) DO NOTHING",
        (conversation, key, text[:20_000], Jsonb(channel_ref) if channel_ref else None),
    )


Show = Callable[[Note], Awaitable[dict[str, Any] | None]]


async def deliver(
    pool: AsyncConnectionPool,
    show: Show,
    *,
    conversation: str | None = None,
    prefix: str | None = None,
    limit: int = 20,
    as_written: bool = False,
) -> int:
    """Show what is waiting in one `conversation`, or in those starting with `prefix`:
    new messages first (a result, a question), then edits of messages already shown (a
    progress line), each oldest first — or, `as_written`, everything in the order it was
    written (a channel that prints each edit as a new line, like the terminal).

    Each row is locked while it is shown (SKIP LOCKED: several processes may deliver), and
    marked with the version shown and where (`show` returns the channel's reference, kept
    for later edits). `show` raising leaves the row for the next round.
    """
    if conversation is None and prefix is None:
        raise ValueError("deliver needs a conversation or a prefix")
    pattern = None if prefix is None else prefix.replace("%", r"\%").replace("_", r"\_") + "%"
    shown = 0
    async with pool.connection() as conn:
        for _ in range(limit):
            async with conn.transaction():
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(
                    "SELECT id, conversation, key, text, approval, version, channel_ref, links"
                    " FROM outbox WHERE delivered_version < version"
                    " AND (conversation = %s OR conversation LIKE %s)"
                    " ORDER BY CASE WHEN %s THEN updated_at END, channel_ref IS NOT NULL, id"
                    " LIMIT 1 FOR UPDATE SKIP LOCKED",
                    (conversation, pattern, as_written),
                )
                row = await cur.fetchone()
                if row is None:
                    break
                note = Note(**row)
                ref = await show(note)
                await conn.execute(
                    "UPDATE outbox SET delivered_version = %s,"
                    " channel_ref = coalesce(%s, channel_ref) WHERE id = %s",
                    (note.version, Jsonb(ref) if ref is not None else None, note.id),
                )
                shown += 1
    return shown
