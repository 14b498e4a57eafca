"""`pr list`, `pr show N` and `pr diff N`: the local forge's pull requests, readable from
the terminal ([View PR] on the local forge names `persais pr show N`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from app.commands.running import Exit, with_runtime
from app.runtime import Runtime
from app.settings import CHECKOUT_ROOT, Settings


def register(commands: Any) -> None:
    pr = commands.add_parser("pr", help="the local forge's pull requests")
    pr_commands = pr.add_subparsers(dest="pr_command", required=True)
    listing = pr_commands.add_parser("list", help="pull requests, the newest first")
    listing.add_argument(
        "--state", choices=["open", "merged", "closed"], help="only pull requests in this state"
    )
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.set_defaults(func=cmd_list)
    show = pr_commands.add_parser("show", help="one pull request: body, files, checks")
    show.add_argument("number", type=int, help="the pull request's number")
    show.set_defaults(func=cmd_show)
    diff = pr_commands.add_parser("diff", help="one pull request's change as a patch")
    diff.add_argument("number", type=int, help="the pull request's number")
    diff.add_argument(
        "--color", choices=["auto", "always", "never"], default="auto",
        help="colour the patch (auto: when printing to a terminal)",
    )  # fmt: skip
    diff.set_defaults(func=cmd_diff)


def _refuse_github(settings: Settings) -> None:
    if settings.home_repo is not None:
        raise Exit(
            2,
            f"the pull requests are on GitHub (PERSAIS_HOME_REPO={settings.home_repo}): "
            f"see its pull requests page; `persais pr` reads the local forge",
        )


def _read(settings: Settings, read: Any) -> Any:
    """Run `read(forge)` against the local forge, a missing pull request as one line."""
    from app.forge.local import LocalForge

    _refuse_github(settings)

    async def body(runtime: Runtime) -> Any:
        try:
            return await read(LocalForge(runtime.pool, settings.home, CHECKOUT_ROOT))
        except LookupError as exc:
            raise Exit(1, str(exc)) from None

    return with_runtime(settings, body)


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    from app.forge import local_pulls

    if args.limit < 1:
        raise Exit(2, "--limit must be at least 1")
    pulls = _read(settings, lambda f: local_pulls.listing(f, state=args.state, limit=args.limit))
    if not pulls:
        print("no pull requests" + (f" {args.state}" if args.state else ""))
        return 0
    for pull in pulls:
        print(
            f"#{pull.number:<4} {pull.state:<6} {pull.updated_at:%Y-%m-%d %H:%M}  "
            f"{pull.title}  ({pull.branch} → {pull.base})"
        )
    return 0


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    from app.forge import local_pulls

    pull = _read(settings, lambda f: local_pulls.detail(f, args.number))
    s = pull.summary
    print(f"#{s.number} {s.title}")
    print(f"{s.state} · {s.branch} → {s.base} · head {pull.head_sha[:12]}", end="")
    print(f" · merged as {pull.merge_sha[:12]}" if pull.merge_sha else "")
    print()
    print(pull.body.rstrip() or "(no description)")
    print()
    print(f"Files ({pull.shortstat or 'no changes'}):")
    for status, path in pull.files:
        print(f"  {status}  {path}")
    print()
    print("Checks:")
    for check in pull.checks:
        print(f"  {check}")
    print()
    print(f"The change: persais pr diff {s.number}")
    return 0


def cmd_diff(settings: Settings, args: argparse.Namespace) -> int:
    from app.forge import local_pulls

    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    patch = _read(settings, lambda f: local_pulls.diff(f, args.number, color=color))
    sys.stdout.write(patch)
    return 0
