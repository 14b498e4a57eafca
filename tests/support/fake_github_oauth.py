"""GitHub's web application flow for a GitHub App's user access tokens, as the fake GitHub
answers it ("Generating a user access token for a GitHub App", and the troubleshooting pages
for authorization request and access token request errors).

- `GET /login/oauth/authorize?client_id=…&redirect_uri=…&state=…`: the person signed in on
  this github.com (`signed_in`) authorises the App at once (there is nobody to press the
  button); GitHub sends the browser to `redirect_uri` with `code` and `state`. A `redirect_uri`
  that is not one of the App's callback URLs sends the browser to the first callback URL with
  `error=redirect_uri_mismatch`; `denies=True` answers `error=access_denied`, as when the
  person presses Cancel. An unknown client id is a 404 page.
- `POST /login/oauth/access_token` (form or JSON: `client_id`, `client_secret`, `code`,
  `redirect_uri`): with `Accept: application/json`, the token as JSON (`ghu_…`, expiring in 8
  hours, with a `ghr_…` refresh token); without it, form-encoded. Errors are answered with
  status 200 and `error`: `incorrect_client_credentials`, `redirect_uri_mismatch`,
  `bad_verification_code` (unknown, used, or older than 10 minutes: a code works once).
- `GET /user` with `Authorization: Bearer <user token>`: the person.

The user tokens are also taken by the permission endpoint
(`collaborator_permission_for_user`): only on repositories the App is installed on (404
otherwise, as a user access token reaches only what both the App and the person can), and,
as the docs say of the collaborators endpoints, only for a person with write, maintain or
admin access (403 otherwise).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

Json = dict[str, Any]
CODE_SECONDS = 600
TOKEN_SECONDS = 28800
DOCS = "https://docs.github.com/apps/managing-oauth-apps"


@dataclass
class OAuthClient:
    """The App's OAuth client and the people who sign in through it."""

    client_id: str = "Iv1.persais"
    client_secret: str = "persais-client-secret"
    callback_urls: list[str] = field(default_factory=list)  # empty: any redirect_uri
    signed_in: str = "octocat"  # who is logged in on this github.com's web pages
    denies: bool = False  # the person presses Cancel instead of Authorize
    codes: dict[str, tuple[str, str, float]] = field(default_factory=dict)  # code -> (login,
    # redirect_uri, expiry)
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (login, exp)
    authorizations: list[Json] = field(default_factory=list)  # each authorize request's query
    exchanges: list[Json] = field(default_factory=list)  # each token request's form, secretless

    def expire_codes(self) -> None:
        """Age every code past GitHub's ten minutes."""
        self.codes = {code: (who, uri, 0.0) for code, (who, uri, _) in self.codes.items()}

    def user_of(self, authorization: str) -> str | None:
        """The person a `Bearer`/`token` user access token belongs to, while it lasts."""
        _, _, token = authorization.partition(" ")
        found = self.tokens.get(token)
        return found[0] if found is not None and found[1] >= time.time() else None

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.authorizations.append(query)
        if query.get("client_id") != self.client_id:
            raise web.HTTPNotFound(text="Not Found")
        redirect = query.get("redirect_uri") or (self.callback_urls or [""])[0]
        state = query.get("state", "")
        if self.callback_urls and redirect not in self.callback_urls:
            raise web.HTTPFound(self._error(
                self.callback_urls[0], "redirect_uri_mismatch",
                "The redirect_uri MUST match the registered callback URL for this application.",
                state,
            ))  # fmt: skip
        if self.denies:
            raise web.HTTPFound(self._error(
                redirect, "access_denied", "The user has denied your application access.", state
            ))  # fmt: skip
        code = secrets.token_hex(10)
        self.codes[code] = (self.signed_in, redirect, time.time() + CODE_SECONDS)
        raise web.HTTPFound(f"{redirect}?{urlencode({'code': code, 'state': state})}")

    async def access_token(self, request: web.Request) -> web.Response:
        if request.content_type == "application/json":
            form: Json = await request.json()
        else:
            form = dict(await request.post())
        self.exchanges.append({k: v for k, v in form.items() if k != "client_secret"})
        wants_json = "application/json" in request.headers.get("Accept", "")
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return self._answer(wants_json, _failure(
                "incorrect_client_credentials",
                "The client_id and/or client_secret passed are incorrect.",
            ))  # fmt: skip
        found = self.codes.pop(str(form.get("code", "")), None)
        if found is None or found[2] < time.time():
            return self._answer(wants_json, _failure(
                "bad_verification_code", "The code passed is incorrect or expired."
            ))  # fmt: skip
        login, redirect, _ = found
        if form.get("redirect_uri") and form["redirect_uri"] != redirect:
            return self._answer(wants_json, _failure(
                "redirect_uri_mismatch",
                "The redirect_uri MUST match the registered callback URL for this application.",
            ))  # fmt: skip
        token = "ghu_" + secrets.token_hex(18)
        self.tokens[token] = (login, time.time() + TOKEN_SECONDS)
        return self._answer(wants_json, {
            "access_token": token, "expires_in": TOKEN_SECONDS,
            "refresh_token": "ghr_" + secrets.token_hex(38),
            "refresh_token_expires_in": 15897600, "scope": "", "token_type": "bearer",
        })  # fmt: skip

    @staticmethod
    def _answer(wants_json: bool, body: Json) -> web.Response:
        if wants_json:
            return web.json_response(body)
        return web.Response(text=urlencode(body), content_type="application/x-www-form-urlencoded")

    @staticmethod
    def _error(redirect: str, error: str, description: str, state: str) -> str:
        query = {"error": error, "error_description": description, "state": state,
                 "error_uri": f"{DOCS}/troubleshooting-authorization-request-errors"}  # fmt: skip
        return f"{redirect}?{urlencode(query)}"


def _failure(error: str, description: str) -> Json:
    uri = f"{DOCS}/troubleshooting-oauth-app-access-token-request-errors"
    return {"error": error, "error_description": description, "error_uri": uri}


def add_oauth_routes(router: web.UrlDispatcher, client: OAuthClient) -> None:
    router.add_get("/login/oauth/authorize", client.authorize)
    router.add_post("/login/oauth/access_token", client.access_token)
