"""`forge status` and `forge sync`: the drift between the checkout Persais runs from and
the local forge, and closing it where git can fast-forward."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.commands.running import Exit, with_runtime
from app.runtime import Runtime
from app.settings import CHECKOUT_ROOT, Settings


def register(commands: Any) -> None:
    forge = commands.add_parser("forge", help="the local forge and the checkout")
    forge_commands = forge.add_subparsers(dest="forge_command", required=True)
    for name, func, what in (
        ("status", cmd_status, "how far the checkout and the forge's main have drifted"),
        ("sync", cmd_sync, "fast-forward whichever of the checkout and the forge is behind"),
    ):
        command = forge_commands.add_parser(name, help=what)
        command.add_argument(
            "--checkout", type=Path, default=CHECKOUT_ROOT,
            help=f"the git checkout to compare (default: Persais's own, {CHECKOUT_ROOT})",
        )  # fmt: skip
        command.set_defaults(func=func)


def _with_forge(settings: Settings, checkout: Path, act: Any) -> Any:
    from app.forge.local import LocalForge
    from mechanic.workspace import GitError

    if settings.home_repo is not None:
        raise Exit(
            2,
            f"the home repository is on GitHub ({settings.home_repo}): "
            "the checkout syncs with it by git pull and git push",
        )
    checkout = checkout.resolve()
    if not (checkout / ".git").exists():
        raise Exit(2, f"{checkout} is not a git checkout")

    async def body(runtime: Runtime) -> Any:
        forge = LocalForge(runtime.pool, settings.home, checkout)
        try:
            return await act(checkout, await forge.repository())
        except (GitError, LookupError) as exc:  # a forge with no main, say: one line
            raise Exit(1, f"forge: {str(exc).splitlines()[0]}") from None

    return with_runtime(settings, body)


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from app.forge import drift

    measured = _with_forge(settings, args.checkout, drift.measure)
    print(measured.describe())
    return 0


def cmd_sync(settings: Settings, args: argparse.Namespace) -> int:
    from app.forge import drift

    synced = _with_forge(settings, args.checkout, drift.sync)
    print(synced.done)
    return 0 if synced.changed or synced.before.state == "in step" else 1
