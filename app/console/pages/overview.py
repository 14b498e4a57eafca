"""`/console/`: the overview — which build answers, each part's health (the same report as
`/` used to show and `/ready` gives machines), and what waits for a person."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.console.health import parts
from app.console.web import Console

NAV = [("Overview", "/console/")]


def routes(console: Console) -> list[BaseRoute]:
    async def page(request: Request) -> Response:
        report = await console.readiness.report() if console.readiness is not None else None
        async with console.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT (SELECT count(*) FROM approvals WHERE status = 'pending'),"
                " (SELECT count(*) FROM inbox WHERE status = 'dead')"
            )
            row = await cur.fetchone()
        pending, dead = row if row is not None else (0, 0)
        return console.page(
            request, "overview.html", title="Overview", report=report,
            parts=parts(report) if report is not None else [], pending=pending, dead=dead,
        )  # fmt: skip

    return [Route("/", page, methods=["GET"])]
