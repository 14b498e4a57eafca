"""`setup github`: create the GitHub App with GitHub's manifest flow and write its
credentials to `.env` (the private key to a file of its own, mode 0600)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import webbrowser
from pathlib import Path
from typing import Any

from app.commands.running import Exit
from app.settings import Settings

TIMEOUT_MINUTES = 15.0  # GitHub's code lasts an hour; a forgotten page should not wait that long


def register(commands: Any) -> None:
    setup = commands.add_parser("setup", help="create what Persais needs at outside services")
    topics = setup.add_subparsers(dest="setup_command", required=True)
    github = topics.add_parser(
        "github", help="create the GitHub App in one step (GitHub's manifest flow)"
    )
    github.add_argument("--webhook-url", help="https://<your host>/webhooks/github (else asked)")
    github.add_argument(
        "--name", help="the App's name, unique on GitHub (default persais-<random>)"
    )
    github.add_argument("--url", help="the App's homepage (default: the webhook URL's origin)")
    github.add_argument("--org", help="create it for this organisation instead of your account")
    github.add_argument("--github-url", help="GitHub's web URL, e.g. https://ghe.example.com")
    github.add_argument(
        "--api-url", help="GitHub's API URL (default: GITHUB_API_URL, or derived from --github-url)"
    )
    github.add_argument("--env-file", type=Path, default=Path(".env"), help="default ./.env")
    github.add_argument(
        "--key-dir", type=Path, help="where the private key goes (default PERSAIS_HOME)"
    )
    github.add_argument("--port", type=int, default=0, help="the local page's port (default: free)")
    github.add_argument(
        "--timeout-minutes", type=float, default=TIMEOUT_MINUTES, help="give up after this long"
    )
    github.add_argument("--open", action="store_true", help="open the page in a web browser")
    github.set_defaults(func=cmd_github)


def cmd_github(settings: Settings, args: argparse.Namespace) -> int:
    from app.setup.flow import Request, run  # githubkit loads only here
    from app.setup.github_app import SetupError

    try:
        request = Request(
            webhook_url=args.webhook_url or _ask_webhook_url(),
            name=args.name,
            url=args.url,
            org=args.org,
            github_url=args.github_url,
            api_url=args.api_url,
            env_file=args.env_file,
            key_dir=args.key_dir or settings.persais_home,
            port=args.port,
            timeout=args.timeout_minutes * 60,
        )
        return asyncio.run(run(settings, request, say=print, ready=_ready(args.open)))
    except SetupError as exc:
        raise Exit(1, str(exc)) from None
    except KeyboardInterrupt:  # uvicorn hands Ctrl-C on once the page has stopped
        raise Exit(130, "setup github: interrupted") from None


def _ask_webhook_url() -> str:
    if not sys.stdin.isatty():
        raise Exit(2, "give --webhook-url https://<your host>/webhooks/github")
    return input("Webhook URL (https://<your host>/webhooks/github): ").strip()


def _ready(open_browser: bool) -> Any:
    def ready(url: str) -> None:
        print(f"Open {url} and press the button to create the App at GitHub.", flush=True)
        if open_browser and not webbrowser.open(url):
            print("(no browser could be opened here: open the address yourself)", flush=True)

    return ready
