"""`/console/audit`: the audit log, newest first, a page at a time (keyset on the id), by
person, by action (exact, or a prefix such as `console.`) and by time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.console.pages.inbox import LARGEST_ID, BadFilter, shown
from app.console.web import Console

NAV = [("Audit log", "/console/audit")]
PAGE_SIZE = 50
FIELDS = ("actor", "action", "from", "to")
LONGEST = 200  # characters of a filter
SHORT_DETAIL = 160  # characters of a detail shown whole in its row; a longer one is folded


@dataclass(frozen=True)
class Filters:
    actor: str | None = None
    action: str | None = None  # exact, or with `prefix` the start of the action names
    prefix: bool = False
    since: datetime | None = None  # at >= since
    until: datetime | None = None  # at < until
    before: int | None = None  # keyset: ids below this one


def filters_of(params: Mapping[str, str]) -> Filters:
    actor = params.get("actor", "").strip() or None
    action = params.get("action", "").strip() or None
    prefix = False
    if action is not None and action.endswith(("*", ".")):
        prefix, action = True, action.rstrip("*") or None
    for name, value in (("person", actor), ("action", action)):
        if value is not None and len(value) > LONGEST:
            raise BadFilter(f"The {name} filter is longer than {LONGEST} characters.")
    since = moment(params.get("from", ""), "From")
    until = moment(params.get("to", ""), "To", end=True)
    if since is not None and until is not None and until <= since:
        raise BadFilter("“To” is before “From”: nothing can be between them.")
    return Filters(actor, action, prefix, since, until, before_of(params.get("before", "")))


def moment(text: str, label: str, *, end: bool = False) -> datetime | None:
    """A datetime-local value (`2026-12-07T13:50`, seconds optional) read as UTC. With `end`,
    the first moment after it: 'to 13:50' takes in the whole of that minute, 'to 2026-12-07'
    the whole day."""
    text = text.strip()
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        if end:
            step = {10: timedelta(days=1), 16: timedelta(minutes=1)}.get(len(text))
            parsed = parsed.replace(microsecond=0) + (step or timedelta(seconds=1))
    except (ValueError, OverflowError):
        raise BadFilter(
            f"“{label}” is not a date and time such as 2026-12-07T13:50 (UTC): {text[:40]!r}."
        ) from None
    return parsed


def before_of(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= LARGEST_ID:
        raise BadFilter(f"{text[:40]!r} is not a place in the audit log; start from the newest.")
    return int(text)


async def entries(conn: AsyncConnection[Any], filters: Filters, limit: int) -> list[dict[str, Any]]:
    """One page of the log, newest first. Each filter has its index (migration 0019): a
    person's or an action's rows are read in id order and the scan stops after `limit`."""
    where: list[sql.Composable] = [sql.SQL("TRUE")]
    params: list[Any] = []
    if filters.actor is not None:
        where.append(sql.SQL("actor = %s"))
        params.append(filters.actor)
    if filters.action is not None and not filters.prefix:
        where.append(sql.SQL('action COLLATE "C" = %s'))
        params.append(filters.action)
    elif filters.action is not None:  # one range of the byte-ordered index, then exact
        where.append(sql.SQL('action COLLATE "C" >= %s AND starts_with(action, %s)'))
        params += [filters.action, filters.action]
        if (upper := after_prefix(filters.action)) is not None:
            where.append(sql.SQL('action COLLATE "C" < %s'))
            params.append(upper)
    if filters.since is not None:
        where.append(sql.SQL("at >= %s"))
        params.append(filters.since)
    if filters.until is not None:
        where.append(sql.SQL("at < %s"))
        params.append(filters.until)
    if filters.before is not None:
        where.append(sql.SQL("id < %s"))
        params.append(filters.before)
    query = sql.SQL(
        "SELECT id, at, actor, action, subject, detail FROM audit_log"
        " WHERE {} ORDER BY id DESC LIMIT %s"
    ).format(sql.SQL(" AND ").join(where))
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(query, [*params, limit])
    return await cur.fetchall()


def after_prefix(prefix: str) -> str | None:
    """The first string past every string that starts with `prefix` (in code point order)."""
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return None
    following = last + 1 if not 0xD800 <= last + 1 <= 0xDFFF else 0xE000
    return prefix[:-1] + chr(following)


def routes(console: Console) -> list[BaseRoute]:
    async def page(request: Request) -> Response:
        raw = {name: request.query_params.get(name, "") for name in FIELDS}
        shared: dict[str, Any] = {"title": "Audit log", "raw": raw, "older": None, "newest": None}
        try:
            filters = filters_of(request.query_params)
        except BadFilter as bad:
            return console.page(
                request, "audit.html", status=400, rows=[], problem=str(bad), **shared
            )
        async with console.pool.connection() as conn:
            rows = await entries(conn, filters, PAGE_SIZE + 1)
        kept = {name: value for name, value in raw.items() if value}
        if len(rows) > PAGE_SIZE:
            rows = rows[:PAGE_SIZE]
            shared["older"] = urlencode({**kept, "before": rows[-1]["id"]})
        if filters.before is not None:
            shared["newest"] = urlencode(kept)
        secrets = console.settings.secrets()
        for row in rows:
            row["shown"] = shown(row["detail"], secrets, indent=None) if row["detail"] else ""
            row["short"] = len(row["shown"]) <= SHORT_DETAIL
        return console.page(request, "audit.html", rows=rows, problem=None, **shared)

    return [Route("/audit", page, methods=["GET"])]
