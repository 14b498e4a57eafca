""" "Sign in with GitHub": the App's own OAuth client (`GITHUB_CLIENT_ID`/`_SECRET`, stored
by `persais setup github`) for people who may write the home repository.

1. `GET /console/auth/github` stores a random state (its hash, for 10 minutes), puts the
   state itself in a cookie of this browser, and sends the browser to GitHub's
   `/login/oauth/authorize` with the client id, the state and the return address
   `<public URL>/console/auth/github/callback`.
2. The callback spends the state (once, in time, and only in the browser it was given to: a
   code from someone else's sign-in cannot log this browser in as them), trades the code for
   a user access token at `/login/oauth/access_token`, asks `GET /user` who it is, and asks
   with that token for the person's permission on the home repository. Write, maintain or
   admin may sign in; anyone else is refused with a page and an audit row.
3. The role: a person with admin permission on the home repository is an admin of the
   console, as they already are of the code; write and maintain get a reader's session.

GitHub's web address comes from `GITHUB_API_URL` by the rule `persais setup github` uses:
`https://api.github.com` → `https://github.com`; Enterprise Server's `https://HOST/api/v3` →
`https://HOST`; anything else (a test server answering both) → itself.

httpx, not githubkit: the web-only process serves this page and must stay light. The code and
the token are never logged, stored or audited; the token is dropped after the two questions.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from psycopg import AsyncConnection
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app import audit
from app.console import auth
from app.console.web import PREFIX, Console, github_sign_in, secure_cookies, set_session_cookie

log = logging.getLogger(__name__)
STATE_SECONDS = 600
STATE_COOKIE = "persais_oauth_state"
CALLBACK = f"{PREFIX}/auth/github/callback"
DEFAULT_API = "https://api.github.com"
DEFAULT_WEB = "https://github.com"
BUILT_IN_ROLES = frozenset({"admin", "maintain", "write", "triage", "read"})
TIMEOUT = httpx.Timeout(10.0)


def web_base(api_url: str) -> str:
    """GitHub's web address for its API address (see the module's docstring)."""
    api = api_url.rstrip("/")
    if api == DEFAULT_API:
        return DEFAULT_WEB
    return api.removesuffix("/api/v3")


def role_for(permission: str) -> auth.Role | None:
    """The console role of a permission on the home repository; None: may not sign in."""
    if permission == "admin":
        return "admin"
    if permission in ("maintain", "write"):
        return "reader"
    return None


class Refused(Exception):
    """Sign-in refused: the message is for the person; `who` is whom the audit names."""

    def __init__(self, message: str, who: str = "stranger") -> None:
        super().__init__(message)
        self.who = who


@dataclass(frozen=True)
class Client:
    """The OAuth client and the addresses it talks to."""

    client_id: str
    client_secret: str
    web: str
    api: str
    home_repo: str

    async def person(self, code: str, redirect_uri: str) -> tuple[str, str]:
        """(login, permission on the home repository) of whoever GitHub gave `code` to."""
        async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as http:
            token = await self._token(http, code, redirect_uri)
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                       "X-GitHub-Api-Version": "2022-11-28"}  # fmt: skip
            answer = await http.get(f"{self.api}/user", headers=headers)
            login = answer.json().get("login") if answer.status_code == 200 else None
            if not isinstance(login, str) or not login:
                raise Refused(f"GitHub did not say who you are (HTTP {answer.status_code}).")
            answer = await http.get(
                f"{self.api}/repos/{self.home_repo}/collaborators/{login}/permission",
                headers=headers,
            )
        if answer.status_code in (403, 404):  # no push access, or no access at all
            return login, "none"
        if answer.status_code != 200:
            raise Refused(f"GitHub did not answer the permission question (HTTP "
                          f"{answer.status_code}); try again.", f"github:{login}")  # fmt: skip
        data = answer.json()
        role = data.get("role_name")
        return login, str(role if role in BUILT_IN_ROLES else data.get("permission") or "none")

    async def _token(self, http: httpx.AsyncClient, code: str, redirect_uri: str) -> str:
        answer = await http.post(
            f"{self.web}/login/oauth/access_token",
            data={"client_id": self.client_id, "client_secret": self.client_secret,
                  "code": code, "redirect_uri": redirect_uri},
            headers={"Accept": "application/json"},
        )  # fmt: skip
        try:
            data: dict[str, Any] = answer.json()
        except ValueError:
            data = {}
        token = data.get("access_token")
        if answer.status_code != 200 or not isinstance(token, str) or not token:
            error = str(data.get("error") or f"HTTP {answer.status_code}")[:80]
            raise Refused(f"GitHub did not accept the sign-in ({error}). Try again.")
        return token


def client_of(console: Console) -> Client:
    settings = console.settings
    secret = settings.github_client_secret
    assert settings.github_client_id is not None
    assert secret is not None
    assert settings.home_repo is not None
    return Client(
        settings.github_client_id, secret.get_secret_value(), web_base(settings.github_api_url),
        settings.github_api_url.rstrip("/"), settings.home_repo,
    )  # fmt: skip


def callback_url(request: Request, console: Console) -> str:
    """Where GitHub sends the browser back: under the public URL when one is configured."""
    base = console.public_url or console.settings.public_url
    if not base:
        base = f"{request.url.scheme}://{request.url.netloc}"
    return base.rstrip("/") + CALLBACK


# --- the state ------------------------------------------------------------------------------


async def new_state(conn: AsyncConnection[Any], *, seconds: int = STATE_SECONDS) -> str:
    state = secrets.token_urlsafe(32)
    await conn.execute("DELETE FROM console_oauth_states WHERE expires_at < now()")
    await conn.execute(
        "INSERT INTO console_oauth_states (state_hash, expires_at) VALUES (%s, now() + %s)",
        (auth.digest(state), timedelta(seconds=seconds)),
    )
    return state


async def spend_state(conn: AsyncConnection[Any], state: str) -> None:
    """Use a state once; Refused when it is unknown, used already or expired."""
    cur = await conn.execute(
        "DELETE FROM console_oauth_states WHERE state_hash = %s RETURNING expires_at > now()",
        (auth.digest(state),),
    )
    row = await cur.fetchone()
    if row is None:
        raise Refused("This sign-in was not started here, or was finished already. Start again.")
    if not row[0]:
        raise Refused("This sign-in took too long (10 minutes at most). Start again.")


# --- the routes -----------------------------------------------------------------------------


async def start(request: Request) -> Response:
    """`GET /console/auth/github`: off to GitHub with a fresh state."""
    console: Console = request.app.state.console
    if not github_sign_in(console.settings):
        return console.page(request, "login.html", status=404,
                            problem="Sign in with GitHub is not configured here.")  # fmt: skip
    client = client_of(console)
    async with console.pool.connection() as conn:
        state = await new_state(conn)
    back = callback_url(request, console)
    query = urlencode({"client_id": client.client_id, "redirect_uri": back, "state": state})
    response = RedirectResponse(f"{client.web}/login/oauth/authorize?{query}", status_code=302)
    response.set_cookie(
        STATE_COOKIE, state, max_age=STATE_SECONDS, path=f"{PREFIX}/auth/github",
        httponly=True, samesite="lax", secure=secure_cookies(request, console),
    )  # fmt: skip
    return response


async def callback(request: Request) -> Response:
    """`GET /console/auth/github/callback?code=…&state=…`: who it is, and may they."""
    console: Console = request.app.state.console
    response: Response
    try:
        person, role = await _sign_in(request, console)
    except Refused as refused:
        async with console.pool.connection() as conn:
            await audit.record(
                conn, actor=refused.who, action="console.login_refused", subject="github",
                detail={"via": "github", "reason": str(refused)},
            )  # fmt: skip
        response = console.page(request, "login.html", status=403, problem=str(refused))
    else:
        async with console.pool.connection() as conn:
            value = await auth.open_session(conn, person, role, via="github")
            await audit.record(conn, actor=person, action="console.login", subject="github",
                               detail={"via": "github", "role": role})  # fmt: skip
        response = RedirectResponse(f"{PREFIX}/", status_code=303)
        set_session_cookie(response, request, console, value)
    response.delete_cookie(STATE_COOKIE, path=f"{PREFIX}/auth/github")
    response.headers["referrer-policy"] = "no-referrer"  # the code stays out of Referer
    return response


async def _sign_in(request: Request, console: Console) -> tuple[str, auth.Role]:
    if not github_sign_in(console.settings):
        raise Refused("Sign in with GitHub is not configured here.")
    state = request.query_params.get("state", "")
    if not state or len(state) > 200:
        raise Refused("GitHub sent no sign-in state back. Start again.")
    async with console.pool.connection() as conn:
        await spend_state(conn, state)
    cookie = request.cookies.get(STATE_COOKIE) or ""
    if not secrets.compare_digest(cookie.encode(), state.encode()):
        raise Refused("This sign-in was started in another browser. Start again here.")
    if error := request.query_params.get("error"):
        raise Refused(f"GitHub did not sign you in ({error[:80]}).")
    code = request.query_params.get("code", "")
    if not code or len(code) > 200:
        raise Refused("GitHub sent no code back. Start again.")
    client = client_of(console)
    try:
        login, permission = await client.person(code, callback_url(request, console))
    except (httpx.HTTPError, ValueError) as exc:  # never logged whole: no code in the log
        log.warning("Sign in with GitHub: GitHub did not answer: %s", type(exc).__name__)
        raise Refused("GitHub could not be reached. Try again in a minute.") from None
    role = role_for(permission)
    if role is None:
        raise Refused(
            f"{login} may not write {client.home_repo} (permission: {permission}), so may not "
            "open this console. Ask an admin of the repository for write access.",
            f"github:{login}",
        )
    return f"github:{login}", role
