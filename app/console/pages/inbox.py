"""`/console/inbox`: every delivery and how it ended, newest first, a page at a time, by
status and source; `/console/inbox/{id}`: one delivery's story and its payload, secrets cut
out; and Replay for a dead one (admins), the same replay as `persais inbox replay`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from app import inbox
from app.console.web import Console, admin_only, viewer_of

NAV = [("Inbox", "/console/inbox")]
PAGE_SIZE = 50
LARGEST_ID = 2**63 - 1  # bigserial
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CURSOR = re.compile(r"(\d{1,19})-(\d{1,19})")  # received_at in µs since the epoch, id
# A field whose name says it holds a secret is hidden whatever its value looks like; the
# text redaction (mechanic.redaction) then catches secrets by their shape and the values
# Persais itself was configured with, wherever they sit.
SECRET_NAME = re.compile(
    r"(?:^|[_-])(?:secret|token|password|passwd|api[_-]?key|private[_-]?key|signature"
    r"|authorization|credentials?)(?:[_-]?\d+)?$",
    re.I,
)


class BadFilter(ValueError):
    """A filter or cursor a person (or a hand-edited address) got wrong, said plainly."""


@dataclass(frozen=True)
class Filters:
    status: str | None = None
    source: str | None = None
    before: tuple[datetime, int] | None = None  # keyset: strictly older than this row

    def query(self, **more: Any) -> str:
        """The address's query string for these filters (and `more`), without empties."""
        given = {"status": self.status, "source": self.source, **more}
        return urlencode({k: v for k, v in given.items() if v})


def filters_of(params: Mapping[str, str]) -> Filters:
    status = params.get("status") or None
    source = params.get("source") or None
    if status is not None and status not in inbox.STATUSES:
        raise BadFilter(f"There is no status {status!r}: it is one of {', '.join(inbox.STATUSES)}.")
    if source is not None and source not in inbox.SOURCES:
        raise BadFilter(f"There is no source {source!r}: it is one of {', '.join(inbox.SOURCES)}.")
    before = params.get("before") or None
    return Filters(status, source, None if before is None else cursor_from(before))


def cursor_of(received_at: datetime, inbox_id: int) -> str:
    return f"{(received_at - EPOCH) // timedelta(microseconds=1)}-{inbox_id}"


def cursor_from(text: str) -> tuple[datetime, int]:
    found = CURSOR.fullmatch(text)
    try:
        if found is None or int(found.group(2)) > LARGEST_ID:
            raise ValueError(text)
        return EPOCH + timedelta(microseconds=int(found.group(1))), int(found.group(2))
    except (ValueError, OverflowError):
        raise BadFilter(
            f"{text[:60]!r} is not a place in the inbox; start again from the newest."
        ) from None


async def deliveries(
    conn: AsyncConnection[Any], filters: Filters, limit: int
) -> list[dict[str, Any]]:
    """One page of deliveries (no payloads), newest first: an index range scan
    (migration 0019) that stops after `limit` rows."""
    where: list[sql.Composable] = [sql.SQL("TRUE")]
    params: list[Any] = []
    if filters.status is not None:
        where.append(sql.SQL("status = %s"))
        params.append(filters.status)
    if filters.source is not None:
        where.append(sql.SQL("source = %s"))
        params.append(filters.source)
    if filters.before is not None:
        where.append(sql.SQL("(received_at, id) < (%s, %s)"))
        params += filters.before
    query = sql.SQL(
        "SELECT id, source, delivery_id, event, action, status, attempts, handled_count,"
        " left(last_error, 2000) AS last_error, received_at, processed_at FROM inbox"
        " WHERE {} ORDER BY received_at DESC, id DESC LIMIT %s"
    ).format(sql.SQL(" AND ").join(where))
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(query, [*params, limit])
    return await cur.fetchall()


async def delivery(conn: AsyncConnection[Any], inbox_id: int) -> inbox.StoredDelivery | None:
    if inbox_id > LARGEST_ID:
        return None
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT id, source, delivery_id, event, action, payload, status, attempts,"
        " handled_count, last_error, received_at, processed_at, processed_by"
        " FROM inbox WHERE id = %s",
        (inbox_id,),
    )
    row = await cur.fetchone()
    return None if row is None else inbox.StoredDelivery(**row)


async def replays(conn: AsyncConnection[Any], inbox_id: int) -> list[dict[str, Any]]:
    """Who replayed this delivery, and when (the audit log, by subject)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT at, actor, detail FROM audit_log WHERE subject = %s AND action = 'inbox.replay'"
        " ORDER BY id DESC LIMIT 20",
        (f"inbox:{inbox_id}",),
    )
    return await cur.fetchall()


def hide_secret_fields(value: Any) -> Any:
    """`value` with every string under a secret-sounding name replaced."""
    if isinstance(value, dict):
        return {
            key: "[redacted: secret field]"
            if isinstance(item, str) and item and SECRET_NAME.search(str(key))
            else hide_secret_fields(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [hide_secret_fields(item) for item in value]
    return value


def shown(value: Any, secrets: Iterable[str], *, indent: int | None = 2) -> str:
    """JSON for a person to read — pretty (`indent`) or on one line (None) — with secrets
    cut out: by field name, by shape, and every value Persais was configured with."""
    from mechanic import redaction  # not at import: the web process loads no mechanic.*

    separators = None if indent is not None else (", ", ": ")
    text = json.dumps(
        hide_secret_fields(value), indent=indent, separators=separators, ensure_ascii=False
    )
    return redaction.redact(text, secrets)


def redacted(text: str | None, secrets: Iterable[str]) -> str | None:
    from mechanic import redaction

    return None if text is None else redaction.redact(text, secrets)


def routes(console: Console) -> list[BaseRoute]:
    async def listing(request: Request) -> Response:
        raw = {k: request.query_params.get(k, "") for k in ("status", "source", "before")}
        try:
            filters = filters_of(request.query_params)
        except BadFilter as bad:
            return console.page(
                request, "inbox.html", status=400, title="Inbox", rows=[], raw=raw,
                problem=str(bad), statuses=inbox.STATUSES, sources=inbox.SOURCES,
                older=None, newest=None,
            )  # fmt: skip
        async with console.pool.connection() as conn:
            rows = await deliveries(conn, filters, PAGE_SIZE + 1)
        secrets = console.settings.secrets()
        for row in rows:
            row["last_error"] = redacted(row["last_error"], secrets)
        older = None
        if len(rows) > PAGE_SIZE:
            rows = rows[:PAGE_SIZE]
            older = filters.query(before=cursor_of(rows[-1]["received_at"], rows[-1]["id"]))
        return console.page(
            request, "inbox.html", title="Inbox", rows=rows, raw=raw, problem=None,
            statuses=inbox.STATUSES, sources=inbox.SOURCES, older=older,
            newest=filters.query() if filters.before is not None else None,
        )  # fmt: skip

    async def detail(
        request: Request, *, problem: str | None = None, status: int = 200
    ) -> Response:
        inbox_id: int = request.path_params["id"]
        async with console.pool.connection() as conn:
            stored = await delivery(conn, inbox_id)
            history = await replays(conn, inbox_id) if stored is not None else []
        if stored is None:
            return console.page(
                request, "inbox_missing.html", status=404, title="Inbox", inbox_id=inbox_id
            )
        secrets = console.settings.secrets()
        return console.page(
            request, "inbox_delivery.html", status=status, title=f"Delivery {inbox_id}",
            row=stored, payload=shown(stored.payload, secrets),
            last_error=redacted(stored.last_error, secrets), history=history,
            problem=problem, replayed=request.query_params.get("replayed") == "1",
            can_replay=stored.status == "dead" and viewer_of(request).admin,
        )  # fmt: skip

    async def page(request: Request) -> Response:
        return await detail(request)

    async def replay(request: Request) -> Response:
        refused = admin_only(request)
        if refused is not None:
            return refused
        inbox_id: int = request.path_params["id"]
        if console.runtime is None:
            return await detail(request, status=503, problem=(
                "This process has no queue to put the delivery on: replay it from a running"
                f" server, or with `persais inbox replay {inbox_id}`."))  # fmt: skip
        async with console.pool.connection() as conn:
            done = inbox_id <= LARGEST_ID and await inbox.replay(
                conn, console.runtime.queue, inbox_id, actor=viewer_of(request).person,
                of=("dead",), detail={"via": "console"},
            )  # fmt: skip
            stored = None if done else await delivery(conn, inbox_id)
        if done:
            return RedirectResponse(f"/console/inbox/{inbox_id}?replayed=1", status_code=303)
        if stored is None:
            return await detail(request)  # the 404 page
        return await detail(request, status=409, problem=(
            f"Delivery {inbox_id} is {stored.status}, not dead: only a dead delivery can be"
            " replayed (a failed one is still being retried)."))  # fmt: skip

    return [
        Route("/inbox", listing, methods=["GET"]),
        Route("/inbox/{id:int}", page, methods=["GET"]),
        Route("/inbox/{id:int}/replay", replay, methods=["POST"]),
    ]
