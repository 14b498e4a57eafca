"""A local GitHub REST API for the endpoints Persais calls, as GitHub answers them.

It checks what GitHub checks: the App's JWT is verified with the App's *public* key (RS256,
`iss` the App id, at most ten minutes long, not expired); installation tokens it handed out
are required everywhere else, and only for their own installation. Objects are built from
the published `@octokit/webhooks-examples` payloads, so githubkit parses real shapes.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.loopback import serve
from tests.support.webhooks import example

APP_ID = 123456


def app_key_pair() -> tuple[str, str]:
    """A fresh RSA key pair for a test App: (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@dataclass
class Call:
    method: str
    path: str
    auth: str  # "jwt", "installation:<id>", or "none"
    at: float


@dataclass
class FakeGitHub:
    public_key: str
    app_id: int = APP_ID
    installations: dict[str, int] = field(default_factory=dict)  # "owner/repo" -> id
    permissions: dict[tuple[str, str], str] = field(default_factory=dict)  # (repo, user) -> role
    tokens: dict[str, tuple[int, float]] = field(default_factory=dict)  # token -> (id, expiry)
    calls: list[Call] = field(default_factory=list)
    # Failures to give before answering: path fragment -> [(status, headers), ...]
    failures: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)

    def calls_to(self, fragment: str) -> list[Call]:
        return [c for c in self.calls if fragment in c.path]

    # --- authentication, as GitHub does it ---------------------------------------------

    def _jwt(self, request: web.Request) -> None:
        token = _bearer(request)
        try:
            claims = jwt.decode(
                token, self.public_key, algorithms=["RS256"], options={"require": ["iat", "exp"]}
            )
        except jwt.PyJWTError as exc:
            raise _error(401, f"A JSON web token could not be decoded ({exc})") from None
        if str(claims.get("iss")) != str(self.app_id):
            raise _error(401, "'Issuer' claim ('iss') must be an Integer")
        if claims["exp"] - claims["iat"] > 660:
            raise _error(401, "'Expiration time' claim ('exp') is too far in the future")

    def _installation(self, request: web.Request) -> int:
        header = request.headers.get("Authorization", "")
        token = header.split(" ", 1)[1] if " " in header else ""
        found = self.tokens.get(token)
        if found is None or found[1] < time.time():
            raise _error(401, "Bad credentials")
        return found[0]

    def _record(self, request: web.Request, auth: str) -> None:
        self.calls.append(Call(request.method, request.path, auth, time.monotonic()))
        for fragment, queued in self.failures.items():
            if fragment in request.path and queued:
                status, headers = queued.pop(0)
                message = "You have exceeded a secondary rate limit." if status == 403 else "Bad"
                raise _status(status, message, headers)

    # --- endpoints ----------------------------------------------------------------------

    async def app(self, request: web.Request) -> web.Response:
        self._jwt(request)
        self._record(request, "jwt")
        return web.json_response(
            {"id": self.app_id, "slug": "persais", "name": "Persais", "owner": _user()}
        )

    async def access_token(self, request: web.Request) -> web.Response:
        self._jwt(request)
        self._record(request, "jwt")
        installation_id = int(request.match_info["id"])
        if installation_id not in self.installations.values():
            raise _error(404, "Not Found")
        token = "ghs_" + secrets.token_urlsafe(27)
        expires = datetime.now(UTC) + timedelta(hours=1)
        self.tokens[token] = (installation_id, expires.timestamp())
        return web.json_response(
            {"token": token, "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
             "permissions": {"contents": "write", "pull_requests": "write"},
             "repository_selection": "all"},
            status=201,
        )  # fmt: skip

    async def repo_installation(self, request: web.Request) -> web.Response:
        self._jwt(request)
        self._record(request, "jwt")
        full = f"{request.match_info['owner']}/{request.match_info['repo']}"
        if full not in self.installations:
            raise _error(404, "Not Found")
        # The webhook's installation object, completed with what the REST answer adds.
        installation = example("installation", "created")["installation"]
        installation.update(id=self.installations[full], app_id=self.app_id, app_slug="persais")
        for nullable in ("single_file_name", "suspended_by", "suspended_at"):
            installation.setdefault(nullable, None)
        return web.json_response(installation)

    async def collaborator_permission(self, request: web.Request) -> web.Response:
        installation_id = self._installation(request)
        self._record(request, f"installation:{installation_id}")
        full = f"{request.match_info['owner']}/{request.match_info['repo']}"
        if self.installations.get(full) != installation_id:
            raise _error(404, "Not Found")
        user = request.match_info["user"]
        role = self.permissions.get((full, user))
        if role is None:
            raise _error(404, f"{user} is not a user")
        legacy = {"maintain": "write", "triage": "read"}.get(role, role)
        push = legacy in ("write", "admin")
        flags = {"admin": role == "admin", "push": push, "pull": True}
        collaborator = {**_user(user), "role_name": role, "permissions": flags}
        return web.json_response({"permission": legacy, "role_name": role, "user": collaborator})


def _user(login: str = "octocat") -> dict[str, Any]:
    user = example("installation", "created")["sender"]
    user["login"] = login
    return dict(user)


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise _error(401, "A JSON web token could not be decoded")
    return header.removeprefix("Bearer ")


def _error(status: int, message: str) -> web.HTTPException:
    """An error as GitHub writes it: JSON with `message` and `documentation_url`."""
    body = {"message": message, "documentation_url": "https://docs.github.com/rest"}
    cls = {401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 404: web.HTTPNotFound}[status]
    return cls(text=json.dumps(body), content_type="application/json")


def _status(status: int, message: str, headers: dict[str, str]) -> web.HTTPException:
    """Any status as an aiohttp exception (aiohttp keys its classes by status)."""
    cls = type(f"HTTP{status}", (web.HTTPException,), {"status_code": status})
    return cls(text=json.dumps({"message": message}), content_type="application/json",
               headers=headers)  # fmt: skip


@contextmanager
def fake_github(public_key: str, **state: Any) -> Iterator[tuple[str, FakeGitHub]]:
    fake = FakeGitHub(public_key, **state)
    app = web.Application()
    app.router.add_get("/app", fake.app)
    app.router.add_post("/app/installations/{id}/access_tokens", fake.access_token)
    app.router.add_get("/repos/{owner}/{repo}/installation", fake.repo_installation)
    app.router.add_get(
        "/repos/{owner}/{repo}/collaborators/{user}/permission", fake.collaborator_permission
    )
    with serve(app) as port:
        yield f"http://127.0.0.1:{port}", fake
