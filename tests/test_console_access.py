"""Every route of the console, tried as a stranger, a reader and a forger would.

The route list is read from the mount itself, so a page added later without a place here
fails `test_every_route_is_judged_here` until someone decides who may use it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from starlette.routing import Mount, Route

from app.console.site import mount
from app.console.web import Console
from app.settings import Settings
from tests.support.console import console_client, log_in

Sql = Callable[..., list[tuple[Any, ...]]]
SENTINEL = "s3ntinel-7f2c"

# Open to anyone: the login page, spending a link, the GitHub sign-in, the assets.
OPEN = {"/login", "/login/{token}", "/auth/github", "/auth/github/callback", "/static"}
# Read by any session, refused (401, the login page) to strangers.
READ = {
    "/": "/console/",
    "/questions": "/console/questions",
    "/questions/live": "/console/questions/live",
    "/jobs": "/console/jobs",
    "/jobs/{id}": "/console/jobs/j0b5e771",
    "/jobs/{id}/events": "/console/jobs/j0b5e771/events",
    "/pulls": "/console/pulls",
    "/pulls/{number:int}": "/console/pulls/1",
    "/pulls/github/{owner:str}/{repo:str}/{number:int}": "/console/pulls/github/o/r/1",
    "/releases": "/console/releases",
    "/releases/{number:int}": "/console/releases/1",
    "/agents": "/console/agents",
    "/inbox": "/console/inbox",
    "/inbox/{id:int}": "/console/inbox/1",
    "/audit": "/console/audit",
    "/memory": "/console/memory",
    "/files/{commit}/{path:path}": "/console/files/0123abcd/README.md",
}
# Actions only an admin may take.
ADMIN = {
    "/questions/{id}": "/console/questions/q5e771",
    "/releases/{number:int}/rollback": "/console/releases/1/rollback",
    "/releases/deploy/{number:int}": "/console/releases/deploy/1",
    "/inbox/{id:int}/replay": "/console/inbox/1/replay",
    "/memory/lessons/{lesson_id:int}/retire": "/console/memory/lessons/1/retire",
}
# Any session may end itself.
SESSION = {"/logout": "/console/logout"}


def _routes(settings: Settings) -> dict[str, set[str]]:
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool("postgresql://nowhere/none", open=False)
    inner = mount(Console(pool=pool, settings=settings)).app
    routes: dict[str, set[str]] = {}
    for route in getattr(inner, "routes", []):
        if isinstance(route, Route):
            routes[route.path] = set(route.methods or ())
        elif isinstance(route, Mount):
            routes[route.path] = {"GET"}
    return routes


def _seed(sql: Sql) -> None:
    """One row of each kind a page shows, each carrying the sentinel."""
    # An ended job (failed minutes ago), so its event stream replays and ends.
    sql("INSERT INTO jobs (id, conversation, requested_by, request, status, updated_at)"
        " VALUES ('j0b5e771', 'tg:1', 'tg:1', %s, 'failed', now() - interval '5 minutes')",
        f"make {SENTINEL}")  # fmt: skip
    sql("INSERT INTO approvals (id, conversation, agent, question, prompt, choices,"
        " requested_by, expires_at) VALUES ('q5e771', 'tg:1', 'mechanic', 'deploy', %s,"
        " '[[\"deploy\", \"Deploy\"], [\"abort\", \"Abort\"]]'::jsonb, 'tg:1',"
        " now() + interval '1 hour')", f"Deploy {SENTINEL}?")  # fmt: skip
    sql("INSERT INTO audit_log (actor, action, subject) VALUES (%s, 'test.seeded', NULL)",
        f"tg:{SENTINEL}")  # fmt: skip


def test_every_route_is_judged_here(settings: Settings) -> None:
    judged = OPEN | set(READ) | set(ADMIN) | set(SESSION)
    assert set(_routes(settings)) == judged, "a console route nobody decided about"
    for path, methods in _routes(settings).items():
        if path in ADMIN or path in SESSION:
            assert methods == {"POST"}, path
        else:
            assert "POST" not in methods, path


def test_a_stranger_gets_only_the_login_page(settings: Settings, database: str, sql: Sql) -> None:
    _seed(sql)
    with console_client(settings, database) as client:
        for path in [*READ.values(), *ADMIN.values(), *SESSION.values()]:
            method = "POST" if path in ADMIN.values() or path in SESSION.values() else "GET"
            answer = client.request(method, path, data={"csrf": "x", "choice": "deploy"})
            assert answer.status_code == 401, (method, path)
            assert 'action="/console/login' in answer.text or "console-link" in answer.text
            assert SENTINEL not in answer.text, path
            assert re.search(r"\b\d+ (jobs?|questions?|deliver)", answer.text) is None, path
    assert sql("SELECT status FROM approvals WHERE id = 'q5e771'") == [("pending",)]
    assert sql("SELECT count(*) FROM inbox WHERE source = 'console'") == [(0,)]


def test_a_reader_reads_but_every_action_is_refused(
    settings: Settings, database: str, sql: Sql
) -> None:
    _seed(sql)
    with console_client(settings, database) as client:
        csrf = log_in(client, database, "cli:rita", "reader")
        for path in READ.values():
            answer = client.get(path)
            assert answer.status_code not in (401, 403, 500), (path, answer.status_code)
        for path in ADMIN.values():
            answer = client.post(path, data={"csrf": csrf, "choice": "deploy", "live": "1"})
            assert answer.status_code == 403, (path, answer.status_code, answer.text[:200])
    assert sql("SELECT status FROM approvals WHERE id = 'q5e771'") == [("pending",)]
    assert sql("SELECT count(*) FROM inbox WHERE source = 'console'") == [(0,)]
    assert sql("SELECT count(*) FROM procrastinate_jobs") == [(0,)]


@pytest.mark.parametrize("forgery", ["no token", "wrong token", "another site"])
def test_an_admins_forged_action_is_refused_and_audited(
    settings: Settings, database: str, sql: Sql, forgery: str
) -> None:
    _seed(sql)
    with console_client(settings, database) as client:
        csrf = log_in(client, database, "cli:ada", "admin")
        form = {"choice": "deploy", "live": "1"}
        headers: dict[str, str] = {}
        if forgery == "wrong token":
            form["csrf"] = csrf[::-1]
        elif forgery == "another site":
            form["csrf"] = csrf
            headers["origin"] = "https://evil.example"
        for path in [*ADMIN.values(), *SESSION.values()]:
            answer = client.post(path, data=form, headers=headers)
            assert answer.status_code == 403, (forgery, path, answer.status_code)
        assert client.get("/console/").status_code == 200  # still logged in: logout was forged
    refused = sql("SELECT count(*) FROM audit_log WHERE action = 'console.forgery_refused'")
    assert refused == [(len(ADMIN) + len(SESSION),)]
    assert sql("SELECT status FROM approvals WHERE id = 'q5e771'") == [("pending",)]
    assert sql("SELECT count(*) FROM inbox WHERE source = 'console'") == [(0,)]


def test_a_logged_out_session_is_nobody(settings: Settings, database: str, sql: Sql) -> None:
    _seed(sql)
    with console_client(settings, database) as client:
        csrf = log_in(client, database, "cli:ada", "admin")
        cookie = client.cookies.get("persais_console")
        assert client.post("/console/logout", data={"csrf": csrf}).status_code == 303
        client.cookies.set("persais_console", str(cookie), path="/console")  # kept by a thief
        answer = client.get("/console/jobs")
        assert answer.status_code == 401
        assert SENTINEL not in answer.text
        assert client.post(ADMIN["/questions/{id}"], data={"csrf": csrf}).status_code == 401
