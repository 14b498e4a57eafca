"""Who may see the console: one-time links, sessions, CSRF, and a stranger who sees nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.console.pages import PAGES
from app.settings import Settings
from tests.support.console import console_client, csrf_of, log_in, mint_link

Sql = Callable[..., list[tuple[Any, ...]]]


def _page_paths() -> list[str]:
    return [path for page in PAGES for _, path in page.NAV]


def test_a_stranger_gets_the_login_page_on_every_page_and_no_data(
    settings: Settings, database: str, sql: Sql
) -> None:
    sql("INSERT INTO approvals (id, conversation, agent, question, prompt, choices, requested_by,"
        " expires_at) VALUES ('q1', 'tg:1', 'mechanic', 'deploy', 'Deploy secret-agent?',"
        " '[]'::jsonb, 'tg:1', now() + interval '1 hour')")  # fmt: skip
    with console_client(settings, database) as client:
        for path in [*_page_paths(), "/console/nowhere", "/console/jobs/1"]:
            answer = client.get(path)
            assert answer.status_code == 401, path
            assert "persais console-link" in answer.text
            assert "secret-agent" not in answer.text
            assert "open question" not in answer.text
            assert answer.headers["content-security-policy"].startswith("default-src 'self'")
        # A forged cookie is nobody.
        client.cookies.set("persais_console", "made-up", path="/console")
        assert client.get("/console/").status_code == 401
        # An action without a session changes nothing.
        assert client.post("/console/logout", data={"csrf": "x"}).status_code == 401


def test_a_link_logs_in_once_and_leads_to_the_console(
    settings: Settings, database: str, sql: Sql
) -> None:
    token = mint_link(database, "cli:ada", "admin")
    with console_client(settings, database) as client:
        first = client.get(f"/console/login/{token}")
        assert first.status_code == 303
        assert first.headers["location"] == "/console/"
        cookie = first.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert "Path=/console" in cookie
        assert "Secure" not in cookie  # plain http on a laptop: a Secure cookie would not return
        page = client.get("/console/")
        assert page.status_code == 200
        assert "cli:ada (admin)" in page.text
    with console_client(settings, database) as other:
        again = other.get(f"/console/login/{token}")
        assert again.status_code == 403
        assert "used already" in again.text
        assert other.get("/console/").status_code == 401
    rows = sql("SELECT actor, action FROM audit_log WHERE action LIKE 'console.%' ORDER BY id")
    assert rows == [("cli:ada", "console.login"), ("stranger", "console.login_refused")]
    # Only hashes are stored: the token is not in the table.
    assert sql("SELECT count(*) FROM console_links WHERE token_hash = %s", token.encode()) == [(0,)]


def test_an_expired_or_unknown_link_is_refused_with_its_reason(
    settings: Settings, database: str
) -> None:
    expired = mint_link(database, seconds=-1)
    with console_client(settings, database) as client:
        answer = client.get(f"/console/login/{expired}")
        assert answer.status_code == 403
        assert "expired" in answer.text
        unknown = client.get("/console/login/not-a-token")
        assert unknown.status_code == 403
        assert "not known" in unknown.text
        assert "set-cookie" not in unknown.headers


def test_https_public_address_makes_the_cookie_secure(settings: Settings, database: str) -> None:
    with console_client(settings, database, public_url="https://persais.example.org") as client:
        answer = client.get(f"/console/login/{mint_link(database)}")
        assert "Secure" in answer.headers["set-cookie"]


def test_an_action_needs_the_sessions_csrf_token_and_this_sites_origin(
    settings: Settings, database: str, sql: Sql
) -> None:
    with console_client(settings, database) as client:
        csrf = log_in(client, database)
        missing = client.post("/console/logout", data={})
        assert missing.status_code == 403
        wrong = client.post("/console/logout", data={"csrf": "not-it"})
        assert wrong.status_code == 403
        elsewhere = client.post(
            "/console/logout", data={"csrf": csrf}, headers={"origin": "https://evil.example"}
        )
        assert elsewhere.status_code == 403
        assert client.get("/console/").status_code == 200  # still logged in
        by_header = client.post("/console/logout", headers={"x-csrf-token": csrf})
        assert by_header.status_code == 303
        assert client.get("/console/").status_code == 401  # the session is gone
    refused = sql(
        "SELECT detail->>'reason' FROM audit_log WHERE action = 'console.forgery_refused'"
    )
    assert len(refused) == 3
    assert sql("SELECT count(*) FROM console_sessions") == [(0,)]


def test_a_reader_sees_pages_and_the_role_is_shown(settings: Settings, database: str) -> None:
    with console_client(settings, database) as client:
        log_in(client, database, "cli:bob", "reader")
        page = client.get("/console/")
        assert "cli:bob (reader)" in page.text
        for path in _page_paths():
            assert client.get(path).status_code == 200, path
        assert csrf_of(page.text)
