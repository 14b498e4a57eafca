"""The console's Memory page (being built)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.console.web import Console

NAV = [("Memory", "/console/memory")]


def routes(console: Console) -> list[BaseRoute]:
    async def page(request: Request) -> Response:
        return console.page(request, "placeholder.html", title="Memory")

    return [Route("/memory", page, methods=["GET"])]
