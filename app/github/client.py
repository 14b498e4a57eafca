"""The GitHub App as a client: githubkit with the App's key, installation tokens on demand.

githubkit signs a JWT with the App's private key (RS256, ten minutes) for the App's own
endpoints and trades it for an installation token (an hour) for everything else; both are
cached until a minute before they expire, in a cache this client owns and every
installation client of it shares. `GITHUB_API_URL` points it at GitHub Enterprise or a test server.
"""

from __future__ import annotations

from typing import Any

import httpx
from githubkit import AppAuthStrategy, GitHub
from githubkit.exception import RequestFailed
from githubkit.retry import RetryChainDecision, RetryRateLimit, RetryServerError

from app.github.throttle import ContentThrottler
from app.github.tokens import OneFetchStrategy
from app.settings import Settings

WRITERS = frozenset({"admin", "maintain", "write"})
# `role_name` may also be an organisation's custom role, whose name says nothing about
# its access; only these names are trusted, otherwise `permission` decides.
BUILT_IN_ROLES = frozenset({"admin", "maintain", "write", "triage", "read"})
# Rate limits: wait `retry-after`, else until `x-ratelimit-reset`, else a minute (githubkit
# reads the headers), up to 3 times; 5xx: 3 tries with 1, 4, 9 s pauses.
RETRY = RetryChainDecision(RetryRateLimit(max_retry=3), RetryServerError(max_retry=3))


class GitHubAppUnavailable(RuntimeError):
    pass


class GitHubApp:
    def __init__(self, settings: Settings, *, content_limit: int = 75) -> None:
        key = settings.private_key_pem()
        if settings.github_app_id is None or key is None:
            raise GitHubAppUnavailable(
                "the GitHub App is not configured (GITHUB_APP_ID and GITHUB_PRIVATE_KEY or "
                "GITHUB_PRIVATE_KEY_PATH)"
            )
        self.auth = AppAuthStrategy(settings.github_app_id, key)
        self.base_url = settings.github_api_url.rstrip("/") + "/"
        # Our own token cache (githubkit's default is one per process, keyed by App id
        # alone), fetching each installation's token once however many ask at the same
        # time, and no HTTP response cache: a permission answer must not be a minute old.
        self.cache = OneFetchStrategy()
        self.app: GitHub[Any] = GitHub(
            self.auth, base_url=self.base_url, user_agent="persais",
            cache_strategy=self.cache, http_cache=False, auto_retry=RETRY,
        )  # fmt: skip
        self.content_limit = content_limit
        self._installations: dict[int, GitHub[Any]] = {}
        self._installation_ids: dict[str, int] = {}  # "owner/repo" -> installation id
        self._slug: str | None = None

    def installation(self, installation_id: int) -> GitHub[Any]:
        """A client acting as one installation (its token fetched on first use, cached),
        with its own throttle on content-creating requests."""
        client = self._installations.get(installation_id)
        if client is None:
            client = GitHub(
                self.auth.as_installation(installation_id), base_url=self.base_url,
                user_agent="persais", cache_strategy=self.cache, http_cache=False,
                auto_retry=RETRY, throttler=ContentThrottler(self.content_limit),
            )  # fmt: skip
            self._installations[installation_id] = client
        return client

    async def token(self, installation_id: int) -> str:
        """An installation token (for git over HTTPS): githubkit's cached one while it is
        fresh, else a new one fetched through githubkit's own flow (and cached there)."""
        client = self.installation(installation_id)
        flow = client.auth.get_auth_flow(client).async_auth_flow(
            httpx.Request("GET", self.base_url + "installation/repositories")
        )
        request = await flow.__anext__()
        if "/access_tokens" in request.url.path:  # no fresh token cached: fetch one
            async with httpx.AsyncClient(timeout=30) as http:
                response = await http.send(request)
            request = await flow.asend(response)
        await flow.aclose()
        return str(request.headers["Authorization"]).split(" ", 1)[1]

    async def bot_login(self) -> str:
        """The App's own user on GitHub (`<slug>[bot]`): its comments are never commands."""
        if self._slug is None:
            self._slug = str((await self.describe())["slug"])
        return f"{self._slug}[bot]"

    async def describe(self) -> dict[str, Any]:
        """The App itself (GET /app with the JWT): proves the id and the key belong together."""
        response = await self.app.arequest("GET", "/app")
        data: dict[str, Any] = response.json()
        return data

    async def installation_for(self, owner: str, repo: str) -> int:
        """The installation on `owner/repo`, asked once per process."""
        key = f"{owner}/{repo}"
        if key not in self._installation_ids:
            response = await self.app.rest.apps.async_get_repo_installation(owner, repo)
            self._installation_ids[key] = response.parsed_data.id
        return self._installation_ids[key]

    async def permission(self, installation_id: int, owner: str, repo: str, user: str) -> str:
        """The commenter's permission on the repository: admin, maintain, write, triage,
        read or none (a stranger is "none", not an error). A custom role counts as the
        base permission GitHub reports for it (admin, write or read)."""
        client = self.installation(installation_id)
        try:
            response = await client.rest.repos.async_get_collaborator_permission_level(
                owner, repo, user
            )
        except RequestFailed as exc:
            if exc.response.status_code == 404:
                return "none"
            raise
        data = response.parsed_data
        role = getattr(data, "role_name", None)
        return str(role) if role in BUILT_IN_ROLES else str(data.permission)

    async def may_command(self, installation_id: int, owner: str, repo: str, user: str) -> bool:
        return await self.permission(installation_id, owner, repo, user) in WRITERS
