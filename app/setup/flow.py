"""`persais setup github` from start to end: the page, the trade, the files, the link.

Nothing is written before GitHub has answered the trade; after it, the key file and then
`.env`, and only names and paths are printed, never a secret.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from app.console.github_login import CALLBACK as SIGN_IN_CALLBACK
from app.settings import Settings
from app.setup import env_file
from app.setup.github_app import (
    DEFAULT_API_URL,
    CreatedApp,
    SetupError,
    check_webhook_url,
    manifest,
    place,
    trade,
)
from app.setup.manifest_page import ManifestPage, Outcome, serve_until_traded


@dataclass(frozen=True)
class Request:
    webhook_url: str
    env_file: Path
    key_dir: Path
    name: str | None = None
    url: str | None = None
    org: str | None = None
    github_url: str | None = None
    api_url: str | None = None
    port: int = 0
    timeout: float = 15 * 60


async def run(
    settings: Settings, request: Request, *, say: Callable[[str], None],
    ready: Callable[[str], None],
) -> int:  # fmt: skip
    """Serve the page, wait for GitHub's code, trade it and write the credentials."""
    webhook_url = check_webhook_url(request.webhook_url)
    where = place(request.github_url, request.api_url, settings.github_api_url, request.org)
    name = request.name or f"persais-{secrets.token_hex(3)}"
    if not 1 <= len(name) <= 34:
        raise SetupError(f"--name: GitHub App names have 1 to 34 characters, got {len(name)}")
    origin = urlsplit(webhook_url)
    homepage = request.url or f"{origin.scheme}://{origin.netloc}/"

    async def trade_and_write(code: str) -> Outcome:
        try:
            app = await trade(where.api_url, code)
        except SetupError as exc:
            return Outcome(message="", error=str(exc))
        try:
            lines = _write(app, request, where.api_url)
        except (OSError, env_file.EnvFileError) as exc:
            return Outcome(
                message="",
                error=f"GitHub App {app.slug} (id {app.id}) was created, but writing its "
                f"credentials failed: {exc}. Generate a new private key in the App's settings",
            )
        for line in lines:
            say(line)
        return Outcome(message=lines[0], link=app.install_url)

    page = ManifestPage(
        new_app_url=where.new_app_url,
        manifest=lambda redirect: manifest(
            name=name,
            url=homepage,
            webhook_url=webhook_url,
            redirect_url=redirect,
            callback_url=f"{origin.scheme}://{origin.netloc}{SIGN_IN_CALLBACK}",
        ),
        trade=trade_and_write,
    )
    say(f"Creating the GitHub App {name!r} at {where.new_app_url}")
    outcome = await serve_until_traded(
        page, port=request.port, seconds=request.timeout, ready=ready
    )
    if outcome is None and page.interrupted:
        raise SetupError("interrupted before GitHub answered; nothing was written")
    if outcome is None:
        raise SetupError(
            f"no answer from GitHub within {request.timeout / 60:g} minutes; nothing was written"
        )
    if outcome.error is not None:
        raise SetupError(outcome.error)
    return 0


def _write(app: CreatedApp, request: Request, api_url: str) -> list[str]:
    key = env_file.write_private_key(request.key_dir, app.id, app.pem)
    values = {
        "GITHUB_APP_ID": str(app.id),
        "GITHUB_PRIVATE_KEY_PATH": str(key),
        "GITHUB_WEBHOOK_SECRET": app.webhook_secret,
        "GITHUB_CLIENT_ID": app.client_id,
        "GITHUB_CLIENT_SECRET": app.client_secret,
    }
    if api_url != DEFAULT_API_URL:
        values["GITHUB_API_URL"] = api_url
    if request.env_file.exists() and dotenv_values(request.env_file).get("GITHUB_PRIVATE_KEY"):
        values["GITHUB_PRIVATE_KEY"] = ""  # it would win over the new key's path
    backup = env_file.merge(request.env_file, values)
    kept = f" (the previous one is kept as {backup})" if backup is not None else ""
    return [
        f"Created the GitHub App {app.name!r} (id {app.id}, owner {app.owner}).",
        f"Private key: {key} (mode 0600).",
        f"{request.env_file}: set {', '.join(values)}{kept}.",
        f"Install it on your repositories: {app.install_url}",
    ]
