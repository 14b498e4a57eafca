"""GitHub's App manifest flow, as the fake GitHub answers it.

- `POST /settings/apps/new?state=S` (and `/organizations/{org}/settings/apps/new`): the
  browser posts the form with `manifest`; GitHub, once the person confirms, creates the App
  and sends the browser to the manifest's `redirect_url` with `code` and `state` (here at
  once: there is no person to confirm).
- `POST /app-manifests/{code}/conversions`, unauthenticated: 201 with the App, its `pem`,
  `webhook_secret`, `client_id` and `client_secret`, as "Create a GitHub App from a
  manifest" documents; the code works once and for an hour, 404 otherwise.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support import fake_github_objects as objects

Json = dict[str, Any]
CODE_SECONDS = 3600
REQUIRED = ("url", "hook_attributes")


@dataclass
class ManifestApps:
    """The Apps created through manifests, and their codes until traded."""

    manifests: list[Json] = field(default_factory=list)  # as posted, with "_owner"
    apps: list[Json] = field(default_factory=list)  # as the conversion answered them
    codes: dict[str, tuple[Json, float]] = field(default_factory=dict)  # code -> (app, expiry)
    conversions: list[str] = field(default_factory=list)  # every code tried
    next_id: int = 900001

    def expire(self) -> None:
        """Age every code past GitHub's hour."""
        self.codes = {code: (app, 0.0) for code, (app, _) in self.codes.items()}

    async def new_app(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        try:
            posted = json.loads(str(form["manifest"]))
        except (KeyError, ValueError):
            return web.Response(status=422, text="Invalid GitHub App configuration")
        missing = [k for k in REQUIRED if k not in posted]
        if missing or not str(posted.get("hook_attributes", {}).get("url", "")):
            return web.Response(status=422, text=f"Invalid GitHub App configuration: {missing}")
        owner = request.match_info.get("org")
        self.manifests.append({**posted, "_owner": owner})
        base = f"{request.scheme}://{request.host}"
        app = self._app(base, posted, owner)
        code = secrets.token_hex(10)
        self.codes[code] = (app, time.time() + CODE_SECONDS)
        query = {"code": code, "state": request.query.get("state", "")}
        raise web.HTTPFound(f"{posted['redirect_url']}?{urlencode(query)}")

    async def convert(self, request: web.Request) -> web.Response:
        code = request.match_info["code"]
        self.conversions.append(code)
        found = self.codes.pop(code, None)
        if found is None or found[1] < time.time():
            body = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
            return web.json_response(body, status=404)
        self.apps.append(found[0])
        return web.json_response(found[0], status=201)

    def _app(self, base: str, posted: Json, owner: str | None) -> Json:
        app_id, self.next_id = self.next_id, self.next_id + 1
        slug = str(posted.get("name") or f"app-{app_id}").lower().replace(" ", "-")
        stamp = objects.now()
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode()
        return {
            "id": app_id,
            "slug": slug,
            "node_id": objects.node_id("App", app_id),
            "owner": objects.user(base, owner or "octocat", "Organization" if owner else "User"),
            "name": posted.get("name") or slug,
            "description": posted.get("description"),
            "external_url": posted["url"],
            "html_url": f"{base}/apps/{slug}",
            "created_at": stamp,
            "updated_at": stamp,
            "permissions": posted.get("default_permissions", {}),
            "events": posted.get("default_events", []),
            "client_id": f"Iv1.{secrets.token_hex(8)}",
            "client_secret": secrets.token_hex(20),
            "webhook_secret": secrets.token_hex(20),
            "pem": pem,
        }


def add_manifest_routes(router: web.UrlDispatcher, apps: ManifestApps) -> None:
    router.add_post("/settings/apps/new", apps.new_app)
    router.add_post("/organizations/{org}/settings/apps/new", apps.new_app)
    router.add_post("/app-manifests/{code}/conversions", apps.convert)
