"""The console in a test: its Starlette mount over a real pool on the test's database,
driven through Starlette's TestClient, and logged in the way a person is — by spending a
one-time link."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.testclient import TestClient

from app.console import auth
from app.console.site import mount
from app.console.web import Console
from app.settings import Settings

BASE = "http://testserver"


async def _autocommit(conn: Any) -> None:
    await conn.set_autocommit(True)


@contextmanager
def console_client(settings: Settings, database: str, **extra: Any) -> Iterator[TestClient]:
    """A TestClient on a console app (no worker, no runtime): `client.app.state.console`
    is the Console, `extra` its other fields (runtime, readiness, public_url)."""
    pool = AsyncConnectionPool(database, min_size=1, max_size=4, configure=_autocommit, open=False)
    console = Console(pool=pool, settings=settings, **extra)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await pool.open(wait=True)
        try:
            yield
        finally:
            await pool.close()

    app = Starlette(routes=[mount(console)], lifespan=lifespan)
    app.state.console = console
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:
        yield client


def mint_link(database: str, person: str = "cli:ada", role: str = "admin",
              seconds: int = auth.LINK_SECONDS) -> str:  # fmt: skip
    """A login token, stored as `persais console-link` stores one (its hash)."""
    token = secrets.token_urlsafe(32)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO console_links (token_hash, person, role, expires_at)"
            " VALUES (%s, %s, %s, now() + make_interval(secs => %s))",
            (auth.digest(token), person, role, seconds),
        )
    return token


def log_in(client: TestClient, database: str, person: str = "cli:ada", role: str = "admin") -> str:
    """Log `client` in through a fresh one-time link; the session's CSRF token."""
    answer = client.get(f"/console/login/{mint_link(database, person, role)}")
    assert answer.status_code == 303, answer.text
    page = client.get("/console/")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def csrf_of(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)
