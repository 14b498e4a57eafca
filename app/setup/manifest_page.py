"""The local page with the button, and the one answer it waits for.

GitHub's manifest flow runs in the person's browser: a form posted to GitHub's "new App"
page carries the manifest, and GitHub sends the browser back to `redirect_url` with a code
and the `state` the form carried. The page is served on 127.0.0.1 only, a `state` other
than this run's is refused (another site cannot make us trade its code), and the server
stops once one code was traded or the time is up.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

CALLBACK = "/github/callback"


@dataclass
class Outcome:
    """The trade's result: `message` for the page, `error` set when it failed."""

    message: str
    link: str | None = None
    error: str | None = None


Trade = Callable[[str], Awaitable[Outcome]]


class ManifestPage:
    def __init__(
        self, *, new_app_url: str, manifest: Callable[[str], dict[str, Any]], trade: Trade
    ) -> None:
        self.new_app_url = new_app_url
        self.manifest = manifest  # the manifest, given its redirect URL
        self.trade = trade
        self.state = secrets.token_urlsafe(24)
        self.base_url = ""  # http://127.0.0.1:<port>, once bound
        self.outcome: Outcome | None = None
        self.done = asyncio.Event()
        self.interrupted = False  # the server stopped (Ctrl-C) before any answer
        self._busy = False

    def routes(self) -> Starlette:
        return Starlette(
            routes=[Route("/", self.page), Route(CALLBACK, self.callback)],
        )

    async def page(self, request: Request) -> HTMLResponse:
        action = f"{self.new_app_url}?{urlencode({'state': self.state})}"
        body = json.dumps(self.manifest(self.base_url + CALLBACK), indent=2)
        return _html(
            "Create the Persais GitHub App",
            f'<form action="{html.escape(action)}" method="post">'
            f'<input type="hidden" name="manifest" value="{html.escape(body)}">'
            f'<p><button type="submit">Create the GitHub App</button></p></form>'
            f"<details><summary>What GitHub will be asked for</summary>"
            f"<pre>{html.escape(body)}</pre></details>",
        )

    async def callback(self, request: Request) -> HTMLResponse:
        state = request.query_params.get("state", "")
        code = request.query_params.get("code", "")
        if not hmac.compare_digest(state.encode(), self.state.encode()):
            return _html(
                "Not this setup",
                "This answer does not carry this setup's state, so it was ignored. Start "
                f'again from <a href="{self.base_url}/">the setup page</a>.',
                status=400,
            )
        if not code:
            return _html("No code", "GitHub's answer carries no code.", status=400)
        if self._busy or self.outcome is not None:
            return _html("Done already", "This setup has finished; see the terminal.", 409)
        self._busy = True
        try:
            self.outcome = await self.trade(code)
        finally:
            self._busy = False
            self.done.set()
        if self.outcome.error is not None:
            return _html("GitHub App not set up", html.escape(self.outcome.error), status=502)
        link = self.outcome.link or ""
        return _html(
            "GitHub App created",
            f"<p>{html.escape(self.outcome.message)}</p>"
            f'<p><a href="{html.escape(link)}">Install it on your repositories</a></p>',
        )


async def serve_until_traded(
    page: ManifestPage, *, port: int, seconds: float, ready: Callable[[str], None]
) -> Outcome | None:
    """Serve `page` on 127.0.0.1:`port` (0: a free one) until a code was traded (its
    outcome), `seconds` have passed or the server was interrupted (None)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(16)  # a browser that comes before uvicorn runs waits in the backlog
    page.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(page.routes(), log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    waiting = asyncio.create_task(page.done.wait())
    try:
        ready(page.base_url + "/")
        await asyncio.wait({serving, waiting}, timeout=seconds, return_when="FIRST_COMPLETED")
        page.interrupted = serving.done() and not waiting.done()
    finally:
        server.should_exit = True
        waiting.cancel()
        await serving
        sock.close()
    return page.outcome


def _html(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>'
        f"<body><h1>{title}</h1>{body}</body></html>",
        status_code=status,
    )
