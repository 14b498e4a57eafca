"""How often a stranger is told no: once per window, however often they ask.

The answered refusal is audited; the ones after it in the same window are only counted,
and the next answered refusal's audit row carries that count (`refused_quietly`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection


@dataclass(frozen=True)
class Verdict:
    answer: bool  # tell them (and audit it); False: refused quietly, only counted
    quietly_before: int  # refused quietly in the window before this answered one


def decide(since: datetime | None, refused: int, now: datetime, window: timedelta) -> Verdict:
    """`since`/`refused`: the stranger's current window (None: never refused)."""
    if since is None:
        return Verdict(answer=True, quietly_before=0)
    if now - since >= window:
        return Verdict(answer=True, quietly_before=refused - 1)
    return Verdict(answer=False, quietly_before=0)


async def refuse(conn: AsyncConnection[Any], who: str, window: timedelta) -> Verdict:
    """Count one refusal of `who` and say whether to answer it (one transaction, so that
    concurrent requests from the same stranger are answered once)."""
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT since, refused, now() FROM refusals WHERE who = %s FOR UPDATE", (who,)
        )
        row = await cur.fetchone()
        if row is None:
            cur = await conn.execute(
                "INSERT INTO refusals (who, since, refused) VALUES (%s, now(), 1)"
                " ON CONFLICT (who) DO NOTHING RETURNING 1",
                (who,),
            )
            # Lost the race to a concurrent first request: that one answers.
            return Verdict(answer=await cur.fetchone() is not None, quietly_before=0)
        since, refused, now = row
        verdict = decide(since, refused, now, window)
        if verdict.answer:
            await conn.execute(
                "UPDATE refusals SET since = now(), refused = 1 WHERE who = %s", (who,)
            )
        else:
            await conn.execute("UPDATE refusals SET refused = refused + 1 WHERE who = %s", (who,))
        return verdict
