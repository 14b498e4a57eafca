"""`/console/releases`: the release ledger, each release's changes, grants and machines, and
Deploy / Roll back for admins.

Both actions are the chat's own: they defer the `persais.deploy` task that [Deploy],
`/deploy` and [Roll back] defer (`app.deploy.requests.queue`), with the console person as
`by`, as an admin, audited `deploy.requested` / `rollback.requested` with via=console. A
request asked here reports to the conversation `console:<person>`, which no chat shows: its
progress line and result are outbox rows that this page shows (and marks shown), and the
ledger's events say the rest.

A rollback from here goes to any release along the chain `/rollback` walks (the release in
service, the previous good one, the one before that…): one queued rollback per step, run in
order under the deploy lock, each exactly what `/rollback` does (move the pointer, revert the
merge). A release that failed or was rolled back is not offered.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from app.agents import grants
from app.console.web import Console, admin_only, viewer_of
from app.deploy import changes, ledger, requests
from app.deploy.ledger import Release
from app.worker.queue import DEPLOY_TASK

NAV = [("Releases", "/console/releases")]
PAGE = 20
STEPS = 20  # how far back along the chain a rollback may go from here
WAITING = 20


async def rollback_chain(conn: AsyncConnection[Any]) -> tuple[Release | None, list[Release]]:
    """The release in service and, newest first, the good releases `/rollback` would go back
    to one after another."""
    current = await ledger.current(conn)
    chain: list[Release] = []
    step = current
    while step is not None and len(chain) < STEPS:
        step = await ledger.previous_good(conn, step)
        if step is not None:
            chain.append(step)
    return current, chain


async def _waiting(conn: AsyncConnection[Any]) -> list[dict[str, Any]]:
    """Open, validated Mechanic pull requests that nobody deployed yet, and whether a deploy
    of each is queued."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT j.id, j.pr_number, j.pr_url, j.request, j.requested_by, j.head_sha, j.updated_at,"
        " EXISTS (SELECT 1 FROM procrastinate_jobs q WHERE q.task_name = %s"
        "   AND q.status IN ('todo', 'doing') AND q.args->>'action' = 'deploy'"
        "   AND (q.args->>'subject')::int = j.pr_number) AS queued"
        " FROM jobs j WHERE j.status = 'opened' AND j.pr_number IS NOT NULL"
        " AND j.head_sha IS NOT NULL ORDER BY j.updated_at DESC LIMIT %s",
        (DEPLOY_TASK, WAITING),
    )
    return list(await cur.fetchall())


async def _requests(conn: AsyncConnection[Any]) -> tuple[list[dict[str, Any]], int]:
    """What the deploys and rollbacks asked from the console said (newest first), and how
    many requests are still queued or running. What is shown here is marked shown."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT split_part(key, ':', 2) AS rid, conversation,"
        " max(text) FILTER (WHERE key NOT LIKE '%%:result') AS progress,"
        " max(text) FILTER (WHERE key LIKE '%%:result') AS result, max(updated_at) AS at"
        " FROM outbox WHERE conversation LIKE %s AND key LIKE 'deploy:%%'"
        " GROUP BY 1, 2 ORDER BY max(updated_at) DESC LIMIT 10",
        (requests.CONSOLE_PREFIX + "%",),
    )
    said = list(await cur.fetchall())
    await conn.execute(
        "UPDATE outbox SET delivered_version = version WHERE conversation LIKE %s"
        " AND key LIKE 'deploy:%%' AND delivered_version < version",
        (requests.CONSOLE_PREFIX + "%",),
    )
    cur2 = await conn.execute(
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = %s"
        " AND status IN ('todo', 'doing')",
        (DEPLOY_TASK,),
    )
    row = await cur2.fetchone()
    return said, int(row[0]) if row else 0


def _defer(console: Console) -> requests.Defer | None:
    """The worker queue's `defer_deploy` (None: a bare app, with no queue to defer to)."""
    runtime = console.runtime
    return None if runtime is None else runtime.queue.defer_deploy


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("latin-1")
    return {key: values[0] for key, values in parse_qs(body).items()}


def routes(console: Console) -> list[BaseRoute]:
    async def listing(request: Request) -> Response:
        before_text = request.query_params.get("before", "")
        before = int(before_text) if before_text.isdigit() else None
        async with console.pool.connection() as conn:
            rows = await ledger.page(conn, before=before, limit=PAGE + 1)
            current, chain = await rollback_chain(conn)
            waiting = await _waiting(conn)
            said, active = await _requests(conn)
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        return console.page(
            request, "releases.html", title="Releases", releases=rows, current=current,
            targets={r.id: r for r in chain}, waiting=waiting, said=said, active=active,
            before=before, older=rows[-1].id if more and rows else None,
            describe=grants.describe,
            can_act=_defer(console) is not None,
        )  # fmt: skip

    async def detail(request: Request) -> Response:
        number = int(request.path_params["number"])
        async with console.pool.connection() as conn:
            release = await ledger.get(conn, number)
            if release is None:
                text = f"There is no release {number} in the ledger."
                return console.page(request, "releases_note.html", status=404,
                                    title="No such release", back="/console/releases",
                                    text=text)  # fmt: skip
            previous = await ledger.get(conn, release.previous) if release.previous else None
            events = await ledger.events(conn, number)
            machines = await _machines(conn, number)
            current, chain = await rollback_chain(conn)
        found = await changes.of_release(console.settings, release, previous)
        widened = grants.widened(previous.granted if previous else {}, release.granted)
        return console.page(
            request, "releases_detail.html", title=release.label(), release=release,
            previous=previous, events=events, machines=machines, changes=found,
            held=grants.describe(release.granted), widened=[str(c) for c in widened],
            current=current, target=any(r.id == number for r in chain),
            can_act=_defer(console) is not None,
        )  # fmt: skip

    async def rollback(request: Request) -> Response:
        if (refused := admin_only(request)) is not None:
            return refused
        viewer = viewer_of(request)
        number = int(request.path_params["number"])
        form = await _form(request)
        defer = _defer(console)
        if defer is None:
            return _refused(
                console, request, number, "this process has no worker queue to roll back with"
            )
        async with console.pool.connection() as conn:
            current, chain = await rollback_chain(conn)
        if current is None or form.get("live") != str(current.id):
            why = "the release in service changed since the page was shown; nothing was rolled back"
            return _refused(console, request, number, why)
        if not any(r.id == number for r in chain):
            why = (
                f"release {number} is not a good release before the one in service;"
                " nothing was rolled back"
            )
            return _refused(console, request, number, why)
        conversation = requests.console_conversation(viewer.person)
        step = current
        for target in chain:  # one /rollback per step, run in order under the deploy lock
            await requests.queue(
                console.pool, defer, "rollback", step.id, by=viewer.person,
                conversation=conversation, admin=True, via="console", to=number,
            )  # fmt: skip
            if target.id == number:
                break
            step = target
        return RedirectResponse("/console/releases#requests", status_code=303)

    async def deploy(request: Request) -> Response:
        if (refused := admin_only(request)) is not None:
            return refused
        viewer = viewer_of(request)
        number = int(request.path_params["number"])
        defer = _defer(console)
        if defer is None:
            return _refused(
                console, request, None, "this process has no worker queue to deploy with"
            )
        async with console.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id FROM jobs WHERE pr_number = %s AND status = 'opened'"
                " AND head_sha IS NOT NULL ORDER BY updated_at DESC LIMIT 1",
                (number,),
            )
            job = await cur.fetchone()
        if job is None:
            why = (
                f"pull request #{number} is not an open, validated Mechanic pull request;"
                " nothing was deployed"
            )
            return _refused(console, request, None, why)
        await requests.queue(
            console.pool, defer, "deploy", number, by=viewer.person,
            conversation=requests.console_conversation(viewer.person), admin=True,
            via="console", job=str(job[0]),
        )  # fmt: skip
        return RedirectResponse("/console/releases#requests", status_code=303)

    return [
        Route("/releases", listing, methods=["GET"]),
        Route("/releases/{number:int}", detail, methods=["GET"]),
        Route("/releases/{number:int}/rollback", rollback, methods=["POST"]),
        Route("/releases/deploy/{number:int}", deploy, methods=["POST"]),
    ]


def _refused(console: Console, request: Request, number: int | None, problem: str) -> Response:
    """Nothing was queued: say why (409), with the way back."""
    back = f"/console/releases/{number}" if number is not None else "/console/releases"
    return console.page(request, "releases_note.html", status=409, title="Nothing was done",
                        text=problem, back=back)  # fmt: skip


async def _machines(conn: AsyncConnection[Any], release: int) -> list[dict[str, Any]]:
    """How the release went on each Fly machine (the deployer records each outcome)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT machine, name, outcome, detail, at FROM release_machines"
        " WHERE release = %s ORDER BY id LIMIT 200",
        (release,),
    )
    return list(await cur.fetchall())
