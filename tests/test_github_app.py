"""The GitHub App client (githubkit) against a local GitHub that verifies the App's JWT."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest
from githubkit.exception import RequestFailed

from app.github.client import GitHubApp, GitHubAppUnavailable
from app.github.tokens import OneFetchCache
from app.settings import load_settings
from tests.support.fake_github import APP_ID, app_key_pair, fake_github

PRIVATE, PUBLIC = app_key_pair()


def app_for(url: str, key: str = PRIVATE, tmp_path: Path | None = None) -> GitHubApp:
    values = {"GITHUB_APP_ID": APP_ID, "GITHUB_API_URL": url}
    if tmp_path is not None:  # the key from a file, as on a server
        (tmp_path / "app.pem").write_text(key)
        values["GITHUB_PRIVATE_KEY_PATH"] = str(tmp_path / "app.pem")
    else:
        values["GITHUB_PRIVATE_KEY"] = key
    return GitHubApp(load_settings(None, **values))


def test_installation_tokens_are_fetched_once_and_reused(tmp_path: Path) -> None:
    state = {"installations": {"octo/home": 77}, "permissions": {("octo/home", "ada"): "write",
             ("octo/home", "bob"): "read", ("octo/home", "root"): "admin"}}  # fmt: skip
    with fake_github(PUBLIC, **state) as (url, fake):

        async def run() -> tuple[int, list[bool], str]:
            github = app_for(url, tmp_path=tmp_path)
            installation = await github.installation_for("octo", "home")
            allowed = [
                await github.may_command(installation, "octo", "home", user)
                for user in ("ada", "bob", "root", "stranger")
            ]
            return installation, allowed, (await github.describe())["slug"]

        installation, allowed, slug = asyncio.run(run())
    assert installation == 77
    assert allowed == [True, False, True, False]
    assert slug == "persais"
    assert len(fake.calls_to("/access_tokens")) == 1  # one token, four permission checks
    assert [c.auth for c in fake.calls_to("/permission")] == ["installation:77"] * 4
    assert {c.auth for c in fake.calls_to("/installation")} == {"jwt"}


def test_requests_that_start_together_fetch_one_token(tmp_path: Path) -> None:
    """Eight permission checks and two git tokens at once, on a fresh App: one token fetch
    (githubkit alone fetched one per request that missed the cache meanwhile)."""
    state = {"installations": {"octo/home": 77}, "permissions": {("octo/home", "ada"): "write"}}
    with fake_github(PUBLIC, **state) as (url, fake):

        async def run() -> list[object]:
            github = app_for(url, tmp_path=tmp_path)
            checks = [github.may_command(77, "octo", "home", "ada") for _ in range(8)]
            return await asyncio.gather(*checks, github.token(77), github.token(77))

        answers = asyncio.run(run())
    assert answers[:8] == [True] * 8
    assert answers[8] == answers[9]
    assert len(fake.calls_to("/access_tokens")) == 1


def test_a_token_fetch_that_never_stores_is_taken_over() -> None:
    """A fetch that fails stores nothing: the callers waiting on it take over after the
    wait, one of them fetching; a stored token wakes every waiter with it."""
    key = "githubkit:auth:app:1:installation:77:::"

    async def run() -> tuple[object, ...]:
        cache = OneFetchCache(fetch_wait=0.3)
        first = await cache.aget(key)  # this caller fetches (and then fails: stores nothing)
        began = time.monotonic()
        second = await cache.aget(key)  # waits for the first, then fetches itself
        waited = time.monotonic() - began
        third = asyncio.ensure_future(cache.aget(key))  # waits for the second
        await asyncio.sleep(0.05)
        await cache.aset(key, "tok", timedelta(minutes=5))
        jwt = await cache.aget("githubkit:auth:app:1:jwt")  # not an installation: no wait
        return first, second, waited, await third, jwt

    first, second, waited, third, jwt = asyncio.run(run())
    assert (first, second, third, jwt) == (None, None, "tok", None)
    assert isinstance(waited, float)
    assert waited >= 0.25  # it waited for the first fetch instead of fetching at once


def test_a_key_that_is_not_the_apps_is_refused() -> None:
    other, _ = app_key_pair()
    with (
        fake_github(PUBLIC, installations={"octo/home": 77}) as (url, fake),
        pytest.raises(RequestFailed) as refused,
    ):
        asyncio.run(app_for(url, key=other).installation_for("octo", "home"))
    assert refused.value.response.status_code == 401
    assert fake.calls == []  # nothing answered


def test_without_an_app_id_and_key_it_says_what_is_missing() -> None:
    with pytest.raises(GitHubAppUnavailable, match="GITHUB_APP_ID"):
        GitHubApp(load_settings(None))


def test_rate_limits_and_server_errors_are_waited_out_and_retried() -> None:
    state = {
        "installations": {"octo/home": 77},
        "permissions": {("octo/home", "ada"): "write"},
        "failures": {
            "/permission": [
                (403, {"retry-after": "1"}),  # secondary rate limit: wait what it says
                (502, {}),  # a server error: back off and try again
            ]
        },
    }
    with fake_github(PUBLIC, **state) as (url, fake):
        assert asyncio.run(app_for(url).may_command(77, "octo", "home", "ada"))
    first, second, third = fake.calls_to("/permission")
    assert second.at - first.at >= 0.95  # retry-after honoured
    assert third.at - second.at >= 0.95  # backoff after the 502
