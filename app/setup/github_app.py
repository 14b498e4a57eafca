"""The Persais GitHub App as a manifest, and the trade of GitHub's code for its credentials.

`PERMISSIONS` and `EVENTS` are the one list of what the App asks for: the manifest is built
from them, and a test checks that the README's list says the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from githubkit import GitHub
from githubkit.exception import GitHubException, RequestFailed

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_WEB_URL = "https://github.com"
# GitHub's temporary codes are hex; anything else would be spliced into the API path.
_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_ORG_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")


@dataclass(frozen=True)
class Permission:
    name: str  # the manifest's key
    label: str  # as GitHub's settings page (and the README) name it
    access: str  # "read" or "write"


@dataclass(frozen=True)
class Event:
    name: str
    label: str
    # Sent to every App: GitHub offers no box to tick, and refuses it in `default_events`.
    automatic: bool = False


PERMISSIONS = (
    Permission("contents", "Contents", "write"),
    Permission("pull_requests", "Pull requests", "write"),
    Permission("checks", "Checks", "write"),
    Permission("issues", "Issues", "write"),
    Permission("metadata", "Metadata", "read"),
)
EVENTS = (
    Event("installation", "Installation", automatic=True),
    Event("installation_repositories", "Installation repositories", automatic=True),
    Event("pull_request", "Pull request"),
    Event("pull_request_review_comment", "Pull request review comment"),
    Event("issue_comment", "Issue comment"),
    Event("check_run", "Check run"),
    Event("push", "Push"),
)


class SetupError(Exception):
    """One line for the person; nothing was written when it is raised before the trade."""


@dataclass(frozen=True)
class Place:
    """Where the App is created: GitHub's web pages, its API, and whose App it is."""

    web_url: str
    api_url: str
    org: str | None = None

    @property
    def new_app_url(self) -> str:
        owner = f"/organizations/{self.org}" if self.org else ""
        return f"{self.web_url}{owner}/settings/apps/new"


def place(github_url: str | None, api_url: str | None, setting: str, org: str | None) -> Place:
    """GitHub's web and API URLs from what was given: github.com's pair, Enterprise Server's
    `https://HOST` and `https://HOST/api/v3`, or a test server answering both on one URL."""
    if org is not None and not _ORG_RE.match(org):
        raise SetupError(f"--org: not an organisation name: {org!r}")
    for given in (github_url, api_url):
        if given is not None and not _is_http_url(given):
            raise SetupError(f"not an http(s) URL: {given!r}")
    setting = setting.rstrip("/")
    if github_url is not None:
        web = github_url.rstrip("/")
        if api_url is None:
            if setting != DEFAULT_API_URL:
                api_url = setting
            else:
                api_url = DEFAULT_API_URL if web == DEFAULT_WEB_URL else f"{web}/api/v3"
        return Place(web, api_url.rstrip("/"), org)
    api = (api_url or setting).rstrip("/")
    if api == DEFAULT_API_URL:
        web = DEFAULT_WEB_URL
    elif api.endswith("/api/v3"):
        web = api.removesuffix("/api/v3")
    else:
        web = api
    return Place(web, api, org)


def manifest(
    *, name: str, url: str, webhook_url: str, redirect_url: str, callback_url: str
) -> dict[str, Any]:
    """GitHub's App manifest: private, with exactly `PERMISSIONS` and `EVENTS`.
    `callback_url` is where "Sign in with GitHub" returns people to the console."""
    return {
        "name": name,
        "url": url,
        "description": "Persais: a self-modifying ChatOps bot that reviews pull requests.",
        "hook_attributes": {"url": webhook_url, "active": True},
        "redirect_url": redirect_url,
        "callback_urls": [callback_url],
        "public": False,
        "default_permissions": {p.name: p.access for p in PERMISSIONS},
        "default_events": [e.name for e in EVENTS if not e.automatic],
    }


def check_webhook_url(value: str) -> str:
    if not _is_http_url(value):
        raise SetupError(
            f"the webhook URL must be http(s)://<your host>/webhooks/github, got {value!r}"
        )
    return value


@dataclass(frozen=True)
class CreatedApp:
    """What GitHub answers the trade with; the secrets stay out of `repr`."""

    id: int
    slug: str
    name: str
    html_url: str
    owner: str
    client_id: str
    client_secret: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    pem: str = field(repr=False)

    @property
    def install_url(self) -> str:
        return f"{self.html_url.rstrip('/')}/installations/new"


async def trade(api_url: str, code: str) -> CreatedApp:
    """`POST /app-manifests/{code}/conversions`: the App's id, key and secrets, once."""
    if not _CODE_RE.match(code):
        raise SetupError("GitHub's answer carries no valid code; nothing was written")
    client: GitHub[Any] = GitHub(
        base_url=api_url.rstrip("/") + "/", user_agent="persais", auto_retry=False,
        http_cache=False, timeout=30,
    )  # fmt: skip
    try:
        async with client:
            response = await client.rest.apps.async_create_from_manifest(code)
    except RequestFailed as exc:
        status = exc.response.status_code
        raise SetupError(
            f"GitHub refused the code ({status} {_message(exc)}): a code works once, within "
            "an hour; run the command again. Nothing was written"
        ) from None
    except GitHubException as exc:
        raise SetupError(f"cannot reach GitHub at {api_url}: {exc}; nothing was written") from None
    made = response.parsed_data
    if not made.pem or not made.webhook_secret:
        raise SetupError("GitHub's answer has no private key or webhook secret; nothing written")
    return CreatedApp(
        id=made.id, slug=str(made.slug or ""), name=made.name, html_url=made.html_url,
        owner=str(getattr(made.owner, "login", None) or getattr(made.owner, "slug", "")),
        client_id=made.client_id, client_secret=made.client_secret,
        webhook_secret=made.webhook_secret, pem=made.pem,
    )  # fmt: skip


def _message(exc: RequestFailed) -> str:
    try:
        return str(exc.response.json()["message"])
    except Exception:  # not GitHub's JSON: the status says enough
        return exc.response.raw_response.reason_phrase


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.hostname)
