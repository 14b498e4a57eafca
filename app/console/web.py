"""The console's frame: who may see it, how a page is rendered, and the routes of every page.

Every request under `/console` passes `ConsoleGate`: without a live session it gets the
login page (status 401, no data: no counts, no names) — only the login routes and the
static assets are open. Every request that changes something (any method but GET/HEAD)
must carry the session's CSRF token (a form field `csrf` or the `X-CSRF-Token` header that
console.js adds to htmx requests) and, when the browser sends one, an Origin of this site.

A page module (`app/console/pages/*.py`) exports `NAV` (label, path) and `routes(console)`;
`Console.page` renders a template over `base.html` with the viewer and the navigation.
Nothing here imports LangGraph, aiogram or githubkit: the web-only process serves it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import jinja2
from psycopg_pool import AsyncConnectionPool
from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app import audit
from app.console import auth
from app.console.auth import Viewer
from app.settings import Settings

if TYPE_CHECKING:
    from app.runtime import Runtime
    from app.web.health import Readiness

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
PREFIX = "/console"
SAFE_METHODS = frozenset({"GET", "HEAD"})
OPEN_PATHS = ("/console/login", "/console/static/", "/console/auth/github")
# Every asset is Persais's own: nothing external loads, nothing inline runs.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Console:
    """What the pages read and act through. `runtime` is None in a bare test app."""

    pool: AsyncConnectionPool
    settings: Settings
    runtime: Runtime | None = None
    readiness: Readiness | None = None
    public_url: str | None = None  # where people reach the console, if configured
    templates: jinja2.Environment = field(init=False)

    def __post_init__(self) -> None:
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.globals["nav"] = []
        self.templates.globals["github_login"] = github_sign_in(self.settings)
        self.templates.filters["ago"] = ago
        self.templates.filters["short"] = lambda sha: (sha or "")[:12]
        self.templates.filters["utc"] = utc

    def page(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """Render `template` for the request's viewer (`request.state.viewer`)."""
        viewer: Viewer | None = getattr(request.state, "viewer", None)
        started = time.perf_counter()
        html = self.templates.get_template(template).render(
            viewer=viewer, request=request, path=request.url.path, **context
        )
        response = HTMLResponse(html, status_code=status)
        response.headers["server-timing"] = (
            f"render;dur={(time.perf_counter() - started) * 1e3:.1f}"
        )
        return response

    async def audit(self, viewer: Viewer, action: str, subject: str | None, **detail: Any) -> None:
        """Record a console action like its chat twin: the person, the action, the subject."""
        async with self.pool.connection() as conn:
            await audit.record(conn, actor=viewer.person, action=action, subject=subject,
                               detail={"via": "console", **detail})  # fmt: skip


def github_sign_in(settings: Settings) -> bool:
    """ "Sign in with GitHub" is offered when the App's OAuth client and the home repository
    (whose writers may sign in) are configured."""
    return bool(settings.github_client_id and settings.github_client_secret and settings.home_repo)


def viewer_of(request: Request) -> Viewer:
    """The viewer of a request that passed the gate (every page route's)."""
    viewer: Viewer = request.state.viewer
    return viewer


def admin_only(request: Request) -> Response | None:
    """A refusal page for a reader asking for an admin's action, else None."""
    if viewer_of(request).admin:
        return None
    return HTMLResponse("Only an admin may do this.", status_code=403)


def ago(moment: Any) -> str:
    """'3 min ago' for a timestamp (aware datetimes from Postgres)."""
    from datetime import UTC, datetime

    if moment is None:
        return ""
    seconds = (datetime.now(UTC) - moment).total_seconds()
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{max(int(seconds), 0)} s ago"


def utc(moment: Any) -> str:
    """'2026-12-07 13:50:12 UTC' for a timestamp: one clock for every reader of a page."""
    from datetime import UTC

    return "" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


class ConsoleGate:
    """ASGI middleware over the console's routes: sessions, CSRF, security headers."""

    def __init__(self, app: ASGIApp, console: Console) -> None:
        self.app = app
        self.console = console

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [(k.lower(), v) for k, v in message.get("headers", [])]
                have = {k for k, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in have:
                        headers.append((name.encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        path = request.url.path
        if path.startswith(OPEN_PATHS):
            await self.app(scope, receive, send_with_headers)
            return
        async with self.console.pool.connection() as conn:
            viewer = await auth.viewer(conn, request.cookies.get(auth.COOKIE))
        if viewer is None:
            response = self.console.page(request, "login.html", status=401, problem=None)
            await response(scope, receive, send_with_headers)
            return
        if request.method not in SAFE_METHODS:
            body = await request.body()
            refused = await self._refuse_forgery(request, viewer, body)
            if refused is not None:
                await refused(scope, receive, send_with_headers)
                return
            receive = _replay(body)  # the handler reads the body again
        scope.setdefault("state", {})["viewer"] = viewer
        await self.app(scope, receive, send_with_headers)

    async def _refuse_forgery(
        self, request: Request, viewer: Viewer, body: bytes
    ) -> Response | None:
        origin = request.headers.get("origin")
        if origin is not None and origin != _origin(request.url):
            return await self._refused(request, viewer, "the request came from another site")
        given = request.headers.get("x-csrf-token")
        if given is None and request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            given = next(iter(parse_qs(body.decode("latin-1")).get("csrf", [])), None)
        if not viewer.csrf_ok(given):
            return await self._refused(request, viewer, "the form's CSRF token is missing or wrong")
        return None

    async def _refused(self, request: Request, viewer: Viewer, reason: str) -> Response:
        async with self.console.pool.connection() as conn:
            await audit.record(
                conn, actor=viewer.person, action="console.forgery_refused",
                subject=request.url.path, detail={"reason": reason},
            )  # fmt: skip
        return HTMLResponse(f"Refused: {reason}. Reload the page and try again.", status_code=403)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _origin(url: URL) -> str:
    parts = urlsplit(str(url))
    return f"{parts.scheme}://{parts.netloc}"


def secure_cookies(request: Request, console: Console) -> bool:
    """Secure cookies when people reach the console over https (Fly's proxy ends TLS, so the
    configured public address says so even when the request itself arrives as http)."""
    public = console.public_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


def set_session_cookie(response: Response, request: Request, console: Console, value: str) -> None:
    response.set_cookie(
        auth.COOKIE, value, max_age=auth.SESSION_HOURS * 3600, path=PREFIX,
        httponly=True, samesite="lax", secure=secure_cookies(request, console),
    )  # fmt: skip


async def login_with_link(request: Request) -> Response:
    """`/console/login/{token}`: spend the one-time link, open a session, go to /console."""
    console: Console = request.app.state.console
    token = request.path_params["token"]
    async with console.pool.connection() as conn:
        try:
            person, role = await auth.use_link(conn, token)
        except auth.LinkRefused as refused:
            await audit.record(conn, actor="stranger", action="console.login_refused",
                               subject="link", detail={"reason": str(refused)})  # fmt: skip
            return console.page(request, "login.html", status=403, problem=str(refused))
        value = await auth.open_session(conn, person, role, via="link")
        await audit.record(conn, actor=person, action="console.login", subject="link",
                           detail={"role": role})  # fmt: skip
    response = RedirectResponse(f"{PREFIX}/", status_code=303)
    set_session_cookie(response, request, console, value)
    response.headers["referrer-policy"] = "no-referrer"  # the spent token stays out of Referer
    return response


async def login_page(request: Request) -> Response:
    console: Console = request.app.state.console
    return console.page(request, "login.html", problem=None)


async def logout(request: Request) -> Response:
    console: Console = request.app.state.console
    viewer = viewer_of(request)
    async with console.pool.connection() as conn:
        await auth.close_session(conn, viewer.session)
        await audit.record(conn, actor=viewer.person, action="console.logout", subject=None)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(auth.COOKIE, path=PREFIX)
    return response
