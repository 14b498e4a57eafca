"""`/console/jobs`: every Mechanic job, newest first, 50 a page, by status and by who asked;
`/console/jobs/{id}`: one job — its request, plan, rounds, validation, spend, pull request, and
its progress lines, live over server-sent events (`/console/jobs/{id}/events`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from app.console import auth, job_steps, live
from app.console.job_steps import Event
from app.console.web import Console
from app.costs.ledger import Spend

NAV = [("Jobs", "/console/jobs")]
PAGE_SIZE = 50
STATUSES = ("proposed", "queued", "running", "question", "answered", "opened", "failed",
            "refused", "aborted", "deployed")  # fmt: skip
ACTIVE = ("proposed", "queued", "running")
KEEP_ALIVE_SECONDS = 15.0
TICK_SECONDS = 1.0  # how often a quiet stream looks whether the server is stopping
# A job whose status says it ended but whose run never said so (a worker killed between the
# two writes) stops being watched after this long.
SETTLED_SECONDS = 60.0
TRANSCRIPT_CHARS = 20_000


@dataclass(frozen=True)
class Filters:
    status: str | None
    requested_by: str | None
    before: tuple[datetime, str] | None  # keyset: rows older than this (the next page)
    after: tuple[datetime, str] | None  # rows newer than this (the previous page)

    @classmethod
    def of(cls, request: Request) -> Filters:
        query = request.query_params
        status = query.get("status") or None
        who = (query.get("requested_by") or "").strip() or None
        return cls(
            status if status in STATUSES else None, who[:200] if who else None,
            _cursor(query.get("before")), _cursor(query.get("after")),
        )  # fmt: skip

    def link(self, **cursor: str) -> str:
        params = {"status": self.status or "", "requested_by": self.requested_by or "", **cursor}
        return "/console/jobs?" + urlencode({k: v for k, v in params.items() if v})


def _cursor(value: str | None) -> tuple[datetime, str] | None:
    if not value or "~" not in value:
        return None
    moment, _, job_id = value.partition("~")
    try:
        return datetime.fromisoformat(moment), job_id[:64]
    except ValueError:
        return None


def cursor_of(row: dict[str, Any]) -> str:
    return f"{row['created_at'].isoformat()}~{row['id']}"


async def page_of_jobs(
    conn: AsyncConnection[Any], filters: Filters
) -> tuple[list[dict[str, Any]], bool, bool]:
    """One page of jobs, newest first, and whether there are newer and older ones."""
    where: list[str] = []
    params: list[Any] = []
    if filters.status:
        where.append("status = %s")
        params.append(filters.status)
    if filters.requested_by:
        where.append("requested_by = %s")
        params.append(filters.requested_by)
    newer = filters.after is not None and filters.before is None
    if filters.before:
        where.append("(created_at, id) < (%s, %s)")
        params += list(filters.before)
    elif filters.after:
        where.append("(created_at, id) > (%s, %s)")
        params += list(filters.after)
    order = "ASC" if newer else "DESC"
    cur = conn.cursor(row_factory=dict_row)
    conditions = " WHERE " + " AND ".join(where) if where else ""
    query = (
        "SELECT id, requested_by, left(request, 300) AS request, status, stage, pr_number,"  # noqa: S608 - constant text only
        " rounds, cost, created_at, spend.* FROM jobs j"
        f" LEFT JOIN LATERAL ({_SPEND}) spend ON true{conditions}"
        f" ORDER BY created_at {order}, id {order} LIMIT %s"
    )
    await cur.execute(query, (*params, PAGE_SIZE + 1))
    rows = [_with_spend(row) for row in await cur.fetchall()]
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    if newer:
        rows.reverse()
        return rows, more, True
    return rows, filters.before is not None, more


# A job's model calls (app/costs): how many, their tokens, their known cost, and how many
# had no known cost.
_SPEND = (
    "SELECT count(*) AS calls, coalesce(sum(prompt_tokens), 0) AS prompt_tokens,"
    " coalesce(sum(completion_tokens), 0) AS completion_tokens,"
    " coalesce(sum(cost_usd), 0) AS spent, count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced"
    " FROM model_costs WHERE kind = 'job' AND subject = j.id"
)


def _with_spend(row: dict[str, Any]) -> dict[str, Any]:
    """The row with `spend`: what its model calls cost, as /status and the chat say it."""
    spend = Spend(
        row.pop("calls"), row.pop("prompt_tokens"), row.pop("completion_tokens"),
        float(row.pop("spent")), row.pop("unpriced"),
    )  # fmt: skip
    return {**row, "spend": spend}


async def one_job(conn: AsyncConnection[Any], job_id: str) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT j.id, j.conversation, j.requested_by, j.request, j.status, j.stage, j.kind,"  # noqa: S608 - constant text only
        " j.target_pr, j.plan, j.branch, j.pr_number, j.pr_url, j.head_sha, j.rounds, j.cost,"
        " j.aider_seconds, j.attempts, j.template_only, j.message,"
        " right(j.transcript, %s) AS transcript, length(j.transcript) AS transcript_length,"
        " j.abort_requested_by, j.created_at, j.updated_at, p.number AS local_pull, spend.*"
        " FROM jobs j LEFT JOIN pull_requests p ON p.job_id = j.id"
        f" LEFT JOIN LATERAL ({_SPEND}) spend ON true"
        " WHERE j.id = %s",
        (TRANSCRIPT_CHARS, job_id),
    )
    row = await cur.fetchone()
    return None if row is None else _with_spend(row)


async def state_of(conn: AsyncConnection[Any], job_id: str) -> dict[str, Any] | None:
    """What a live stream shows besides the steps: the status and the pull request."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT j.status, j.pr_number, j.pr_url, j.updated_at, p.number AS local_pull"
        " FROM jobs j LEFT JOIN pull_requests p ON p.job_id = j.id WHERE j.id = %s",
        (job_id,),
    )
    return await cur.fetchone()


async def trace_of(conn: AsyncConnection[Any], job_id: str) -> dict[str, Any] | None:
    """What the memory recorded when the job ended: outcome, files, the last problems."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT outcome, rounds, files, diff_summary, problems, deployed_at, rolled_back_at,"
        " rollback_reason, finished_at FROM job_traces WHERE job_id = %s",
        (job_id,),
    )
    return await cur.fetchone()


async def events_of(conn: AsyncConnection[Any], job_id: str) -> list[Event]:
    cur = await conn.execute(
        "SELECT seq, kind, text, at FROM job_events WHERE job_id = %s ORDER BY seq LIMIT 2000",
        (job_id,),
    )
    return [Event(*row) for row in await cur.fetchall()]


def pull_link(job: dict[str, Any], local_forge: bool) -> str | None:
    """Where the job's pull request is read: the console's page on the local forge, GitHub's
    page on GitHub."""
    number = job["pr_number"]
    if number is None:
        return None
    if job["local_pull"] is not None or local_forge:
        return f"/console/pulls/{number}"
    url = job["pr_url"] or ""
    return url if url.startswith(("https://", "http://")) else None


def plan_fields(plan: Any) -> list[tuple[str, str, bool]]:
    """The plan's fields as (name, text, is_structured): scalars as they are, lists and
    objects as indented JSON."""
    if not isinstance(plan, dict):
        return [("plan", json.dumps(plan, indent=2, ensure_ascii=False), True)]
    fields = []
    for name, value in plan.items():
        if value is None or value == []:
            continue
        if isinstance(value, dict | list):
            fields.append((name, json.dumps(value, indent=2, ensure_ascii=False), True))
        else:
            fields.append((name, str(value), False))
    return fields


def routes(console: Console) -> list[BaseRoute]:
    conninfo = console.pool.conninfo
    if not isinstance(conninfo, str):  # Persais gives its pools a conninfo string
        raise TypeError("the console's live feed needs the pool's conninfo as a string")
    feed = live.JobFeed(conninfo)
    local_forge = console.settings.home_repo is None

    def stopping() -> bool:
        return console.runtime is not None and console.runtime.stop_asked

    async def listing(request: Request) -> Response:
        filters = Filters.of(request)
        async with console.pool.connection() as conn:
            rows, newer, older = await page_of_jobs(conn, filters)
        previous = filters.link(after=cursor_of(rows[0])) if rows and newer else None
        following = filters.link(before=cursor_of(rows[-1])) if rows and older else None
        return console.page(
            request, "jobs.html", title="Jobs", jobs=rows, filters=filters,
            statuses=STATUSES, previous=previous, following=following,
        )  # fmt: skip

    async def detail(request: Request) -> Response:
        job_id = request.path_params["id"]
        async with console.pool.connection() as conn:
            job = await one_job(conn, job_id)
            if job is None:
                return console.page(request, "jobs_missing.html", status=404,
                                    title="No such job", job_id=job_id)  # fmt: skip
            trace = await trace_of(conn, job_id)
            events = await events_of(conn, job_id)
        watching = not _ended(job, events)
        return console.page(
            request, "jobs_detail.html", title=f"Job {job_id}", job=job, trace=trace,
            steps=job_steps.lines(events), last_seq=events[-1].seq if events else 0,
            plan=plan_fields(job["plan"]) if job["plan"] is not None else [],
            pull=pull_link(job, local_forge), watching=watching,
        )  # fmt: skip

    async def events(request: Request) -> Response:
        job_id = request.path_params["id"]
        async with console.pool.connection() as conn:
            cur = await conn.execute("SELECT 1 FROM jobs WHERE id = %s", (job_id,))
            if await cur.fetchone() is None:
                return HTMLResponse("No such job.", status_code=404)
        after = live.last_event_id(request.headers.get("last-event-id"))
        if after is None:
            after = live.last_event_id(request.query_params.get("after")) or 0
        return live.EventStream(stream(job_id, after, request.cookies.get(auth.COOKIE)))

    async def record_of(job_id: str) -> str:
        async with console.pool.connection() as conn:
            job = await one_job(conn, job_id)
            trace = await trace_of(conn, job_id)
        assert job is not None  # jobs are never deleted
        plan = plan_fields(job["plan"]) if job["plan"] is not None else []
        return _render(console, "jobs_record.html", job=job, trace=trace, plan=plan, oob=True)

    async def stream(job_id: str, after: int, cookie: str | None) -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        status_shown: str | None = None
        async with feed.watch(job_id) as wake:
            while True:
                wake.clear()
                async with console.pool.connection() as conn:
                    job = await state_of(conn, job_id)
                    found = await events_of(conn, job_id)
                assert job is not None  # jobs are never deleted
                for event, changed in job_steps.replay(found):
                    if event.seq > after:
                        yield live.event("step", _render_step(console, event, changed),
                                         event_id=event.seq)  # fmt: skip
                        after = event.seq
                if job["status"] != status_shown:
                    status_shown = job["status"]
                    yield live.event("status", _render(console, "jobs_status.html", job=job))
                    yield live.event("pull", _render(console, "jobs_pull.html", job=job,
                                                     pull=pull_link(job, local_forge)))  # fmt: skip
                if _ended(job, found):
                    # Empties "updating live", and brings the plan and validation the job
                    # recorded at its end (out of band, into #job-record).
                    yield live.event("done", await record_of(job_id))
                    return
                # Until woken: a stopping server ends the stream (uvicorn waits for open
                # ones), and a quiet one keeps alive and reads again (a job that ended
                # without its run saying so settles).
                waited = 0.0
                while not wake.is_set() and waited < KEEP_ALIVE_SECONDS:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(TICK_SECONDS):
                            await wake.wait()
                    if stopping():
                        return
                    waited += TICK_SECONDS
                if not wake.is_set():
                    async with console.pool.connection() as conn:
                        if await auth.viewer(conn, cookie) is None:
                            return  # logged out or expired: the stream ends with the session
                    yield live.comment("keep-alive")

    return [
        Route("/jobs", listing, methods=["GET"]),
        Route("/jobs/{id}", detail, methods=["GET"]),
        Route("/jobs/{id}/events", events, methods=["GET"]),
    ]


def _ended(job: dict[str, Any], events: list[Event]) -> bool:
    """No more progress will come: the job's status is past running and its run said its
    ending (or said nothing for a minute)."""
    if job["status"] in ACTIVE:
        return False
    settled = (datetime.now(UTC) - job["updated_at"]).total_seconds() > SETTLED_SECONDS
    return job_steps.finished(events) or settled


def _render(console: Console, template: str, **context: Any) -> str:
    return console.templates.get_template(template).render(**context)


def _render_step(console: Console, event: Event, changed: list[job_steps.Line]) -> str:
    return _render(console, "jobs_step.html", new=event.seq, lines=changed)
