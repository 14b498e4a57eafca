"""The console's Inbox page (being built)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.console.web import Console

NAV = [("Inbox", "/console/inbox")]


def routes(console: Console) -> list[BaseRoute]:
    async def page(request: Request) -> Response:
        return console.page(request, "placeholder.html", title="Inbox")

    return [Route("/inbox", page, methods=["GET"])]
