"""The whole console as one Starlette mount at /console: the frame (`web`) around every
page (`pages`)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from app.console import github_login
from app.console.pages import PAGES
from app.console.web import (
    HERE,
    PREFIX,
    Console,
    ConsoleGate,
    login_page,
    login_with_link,
    logout,
)


def mount(console: Console) -> Mount:
    """The whole console as one Starlette mount at /console."""
    routes: list[BaseRoute] = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login/{token}", login_with_link, methods=["GET"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/auth/github", github_login.start, methods=["GET"]),
        Route("/auth/github/callback", github_login.callback, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    nav: list[tuple[str, str]] = []
    for page in PAGES:
        routes += page.routes(console)
        nav += page.NAV
    console.templates.globals["nav"] = nav
    inner = Starlette(routes=routes, middleware=[Middleware(ConsoleGate, console=console)])
    inner.state.console = console
    return Mount(PREFIX, app=inner)
