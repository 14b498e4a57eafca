""" "Sign in with GitHub" against the fake GitHub's web application flow: the state, the code's
trade, who it is and what they may do on the home repository, and every way it is refused."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from app.console.github_login import STATE_COOKIE, role_for, web_base
from app.settings import Settings
from tests.support.console import console_client
from tests.support.fake_github import FakeGitHub, app_key_pair, fake_github

Sql = Callable[..., list[tuple[Any, ...]]]
HOME = "octo/persais"
CALLBACK = "http://testserver/console/auth/github/callback"


@pytest.fixture
def github() -> Iterator[tuple[str, FakeGitHub]]:
    _, public = app_key_pair()
    with fake_github(public) as (url, fake):
        fake.add_repo(HOME, files={"README.md": "# Persais\n"})
        fake.oauth.callback_urls = [CALLBACK]
        yield url, fake


def configured(settings: Settings, api: str) -> Settings:
    return settings.model_copy(update={
        "github_api_url": api, "github_client_id": "Iv1.persais",
        "github_client_secret": SecretStr("persais-client-secret"), "home_repo": HOME,
    })  # fmt: skip


def to_github(client: TestClient) -> str:
    """Press "Sign in with GitHub": where the console sends the browser."""
    answer = client.get("/console/auth/github")
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def authorised(location: str) -> str:
    """The browser at GitHub's authorize page: where GitHub sends it back (path and query)."""
    answer = httpx.get(location, follow_redirects=False)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK
    return f"{back.path}?{back.query}"


def test_a_writer_signs_in_as_a_reader_through_github(
    settings: Settings, database: str, sql: Sql, github: tuple[str, FakeGitHub]
) -> None:
    url, fake = github
    fake.permissions[(HOME, "octocat")] = "write"
    with console_client(configured(settings, url), database) as client:
        login = client.get("/console/login")
        assert 'href="/console/auth/github">Sign in with GitHub</a>' in login.text
        location = to_github(client)
        sent = urlsplit(location)
        assert f"{sent.scheme}://{sent.netloc}{sent.path}" == f"{url}/login/oauth/authorize"
        query = parse_qs(sent.query)
        assert query["client_id"] == ["Iv1.persais"]
        assert query["redirect_uri"] == [CALLBACK]
        state = query["state"][0]
        assert len(state) >= 40
        # Only its hash is stored, for ten minutes.
        assert sql("SELECT count(*) FROM console_oauth_states WHERE state_hash = %s",
                   state.encode()) == [(0,)]  # fmt: skip
        assert sql("SELECT round(extract(epoch FROM expires_at - created_at))"
                   " FROM console_oauth_states") == [(600,)]  # fmt: skip
        back = client.get(authorised(location))
        assert back.status_code == 303, back.text
        assert back.headers["location"] == "/console/"
        assert "HttpOnly" in back.headers["set-cookie"]
        page = client.get("/console/")
        assert page.status_code == 200
        assert "github:octocat (reader)" in page.text
        code = fake.oauth.exchanges[0]["code"]
    assert fake.oauth.exchanges == [{"client_id": "Iv1.persais", "code": code,
                                     "redirect_uri": CALLBACK}]  # fmt: skip
    assert [c.auth for c in fake.calls_to("/user")] == ["user:octocat"]
    assert [c.auth for c in fake.calls_to("/collaborators/octocat/permission")] == ["user:octocat"]
    assert sql("SELECT person, role, via FROM console_sessions") == [
        ("github:octocat", "reader", "github")
    ]
    assert sql("SELECT count(*) FROM console_oauth_states") == [(0,)]  # spent
    rows = sql("SELECT actor, action, subject, detail FROM audit_log ORDER BY id")
    assert rows == [("github:octocat", "console.login", "github",
                     {"via": "github", "role": "reader"})]  # fmt: skip
    # Neither the code nor the token went anywhere near the audit log.
    token = next(iter(fake.oauth.tokens))
    assert code not in str(rows)
    assert token not in str(rows)


def test_an_admin_of_the_home_repository_is_an_admin_of_the_console(
    settings: Settings, database: str, sql: Sql, github: tuple[str, FakeGitHub]
) -> None:
    url, fake = github
    fake.oauth.signed_in = "hubot"
    fake.permissions[(HOME, "hubot")] = "admin"
    with console_client(configured(settings, url), database) as client:
        assert client.get(authorised(to_github(client))).status_code == 303
        assert "github:hubot (admin)" in client.get("/console/").text
    assert sql("SELECT person, role FROM console_sessions") == [("github:hubot", "admin")]


@pytest.mark.parametrize("permission", ["read", "triage", None])
def test_someone_who_may_not_write_the_home_repository_is_refused(
    settings: Settings, database: str, sql: Sql, github: tuple[str, FakeGitHub],
    permission: str | None,
) -> None:  # fmt: skip
    url, fake = github
    fake.oauth.signed_in = "mallory"
    if permission is not None:
        fake.permissions[(HOME, "mallory")] = permission
    with console_client(configured(settings, url), database) as client:
        back = client.get(authorised(to_github(client)))
        assert back.status_code == 403
        assert "mallory may not write octo/persais" in back.text
        assert (
            "set-cookie" not in back.headers or "persais_console=" not in back.headers["set-cookie"]
        )
        assert client.get("/console/").status_code == 401
    assert sql("SELECT count(*) FROM console_sessions") == [(0,)]
    rows = sql("SELECT actor, action, subject FROM audit_log ORDER BY id")
    assert rows == [("github:mallory", "console.login_refused", "github")]


def test_a_wrong_reused_expired_or_foreign_state_is_refused(
    settings: Settings, database: str, sql: Sql, github: tuple[str, FakeGitHub]
) -> None:
    url, fake = github
    fake.permissions[(HOME, "octocat")] = "write"
    with console_client(configured(settings, url), database) as client:
        # Made up: never started here.
        made_up = client.get("/console/auth/github/callback?code=abc&state=made-up")
        assert made_up.status_code == 403
        assert "not started here" in made_up.text
        # Used twice: the second time it is spent.
        back = authorised(to_github(client))
        assert client.get(back).status_code == 303
        client.cookies.delete("persais_console", path="/console")
        client.cookies.set(STATE_COOKIE, parse_qs(urlsplit(back).query)["state"][0],
                           path="/console/auth/github")  # fmt: skip
        again = client.get(back)
        assert again.status_code == 403
        assert "finished already" in again.text
        # Expired: older than ten minutes.
        late = authorised(to_github(client))
        sql("UPDATE console_oauth_states SET expires_at = now() - interval '1 second'")
        expired = client.get(late)
        assert expired.status_code == 403
        assert "took too long" in expired.text
        # Started in another browser: the state is good, but not this browser's.
        theirs = authorised(to_github(client))
    with console_client(configured(settings, url), database) as victim:
        foreign = victim.get(theirs)
        assert foreign.status_code == 403
        assert "another browser" in foreign.text
        assert victim.get("/console/").status_code == 401
    refused = sql("SELECT actor, detail->>'reason' FROM audit_log"
                  " WHERE action = 'console.login_refused' ORDER BY id")  # fmt: skip
    assert [actor for actor, _ in refused] == ["stranger"] * 4
    assert sql("SELECT count(*) FROM console_sessions") == [(1,)]  # the one good sign-in


def test_a_code_github_does_not_accept_or_a_cancelled_sign_in_is_refused(
    settings: Settings, database: str, github: tuple[str, FakeGitHub]
) -> None:
    url, fake = github
    fake.permissions[(HOME, "octocat")] = "write"
    with console_client(configured(settings, url), database) as client:
        back = authorised(to_github(client))
        fake.oauth.expire_codes()
        stale = client.get(back)
        assert stale.status_code == 403
        assert "bad_verification_code" in stale.text
        fake.oauth.denies = True
        cancelled = client.get(authorised(to_github(client)))
        assert cancelled.status_code == 403
        assert "access_denied" in cancelled.text
        assert client.get("/console/").status_code == 401
    wrong_secret = configured(settings, url).model_copy(
        update={"github_client_secret": SecretStr("not-it")}
    )
    fake.oauth.denies = False
    with console_client(wrong_secret, database) as client:
        answer = client.get(authorised(to_github(client)))
        assert answer.status_code == 403
        assert "incorrect_client_credentials" in answer.text


def test_the_button_is_hidden_and_the_route_closed_when_not_configured(
    settings: Settings, database: str, sql: Sql
) -> None:
    with console_client(settings, database) as client:
        login = client.get("/console/login")
        assert login.status_code == 200
        assert "Sign in with GitHub" not in login.text
        assert client.get("/console/auth/github").status_code == 404
        assert client.get("/console/auth/github/callback?code=a&state=b").status_code == 403
    assert sql("SELECT count(*) FROM console_oauth_states") == [(0,)]


def test_the_return_address_is_the_public_url_when_one_is_set(
    settings: Settings, database: str, github: tuple[str, FakeGitHub]
) -> None:
    url, _ = github
    with console_client(configured(settings, url), database,
                        public_url="https://persais.example.org/") as client:  # fmt: skip
        answer = client.get("/console/auth/github")
        query = parse_qs(urlsplit(answer.headers["location"]).query)
        assert query["redirect_uri"] == ["https://persais.example.org/console/auth/github/callback"]
        assert "Secure" in answer.headers["set-cookie"]


def test_githubs_web_address_follows_its_api_address() -> None:
    assert web_base("https://api.github.com") == "https://github.com"
    assert web_base("https://api.github.com/") == "https://github.com"
    assert web_base("https://ghe.example.com/api/v3") == "https://ghe.example.com"
    assert web_base("http://127.0.0.1:8123") == "http://127.0.0.1:8123"


def test_the_role_follows_the_permission_on_the_home_repository() -> None:
    assert role_for("admin") == "admin"
    assert role_for("maintain") == "reader"
    assert role_for("write") == "reader"
    assert [role_for(p) for p in ("triage", "read", "none", "")] == [None] * 4
