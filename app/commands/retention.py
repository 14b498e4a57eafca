"""`retention`: prune now what the periodic task would, or (`--dry-run`) count it."""

from __future__ import annotations

import argparse
from typing import Any

from app.commands.running import with_runtime
from app.runtime import Runtime
from app.settings import Settings


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "retention", help="prune old deliveries, jobs, checkpoints, messages and release folders"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="count what would go, remove nothing"
    )
    parser.set_defaults(func=cmd_retention)


def cmd_retention(settings: Settings, args: argparse.Namespace) -> int:
    from app import retention

    async def body(runtime: Runtime) -> list[retention.Outcome]:
        return await retention.run(
            runtime.pool, retention.Policy.from_settings(settings),
            retention.Place.from_settings(settings), job_manager=runtime.queue.app.job_manager,
            dry_run=args.dry_run,
        )  # fmt: skip

    outcomes = with_runtime(settings, body)
    verb = "would remove" if args.dry_run else "removed"
    for outcome in outcomes:
        if outcome.error is not None:
            print(f"{outcome.step:<16} FAILED: {outcome.error.splitlines()[0][:200]}")
        else:
            print(f"{outcome.step:<16} {verb} {outcome.removed:>8}  ({outcome.seconds:.2f} s)")
    return 1 if any(o.error is not None for o in outcomes) else 0
