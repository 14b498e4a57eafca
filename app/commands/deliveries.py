"""`inbox list` and `inbox replay`: the webhook deliveries and how they ended."""

from __future__ import annotations

import argparse
from typing import Any

from app import inbox
from app.commands.running import Exit, with_runtime
from app.runtime import Runtime
from app.settings import Settings


def register(commands: Any) -> None:
    parser = commands.add_parser("inbox", help="look at and replay webhook deliveries")
    inbox_commands = parser.add_subparsers(dest="inbox_command", required=True)
    listing = inbox_commands.add_parser("list", help="recent deliveries")
    listing.add_argument("--dead", action="store_true", help="only deliveries that gave up")
    listing.add_argument(
        "--status", choices=list(inbox.STATUSES), help="only deliveries in this state"
    )
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.set_defaults(func=cmd_list)
    replay = inbox_commands.add_parser("replay", help="process a delivery again")
    replay.add_argument("id", type=int, help="the inbox id (first column of `inbox list`)")
    replay.set_defaults(func=cmd_replay)


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    status = "dead" if args.dead else args.status

    async def body(runtime: Runtime) -> list[inbox.StoredDelivery]:
        async with runtime.pool.connection() as conn:
            return await inbox.listing(conn, status=status, limit=args.limit)

    rows = with_runtime(settings, body)
    if not rows:
        print("no deliveries" + (f" with status {status}" if status else ""))
        return 0
    for row in rows:
        event = row.event + (f".{row.action}" if row.action else "")
        line = (
            f"{row.id:>7}  {row.source:<8} {row.status:<9} {row.attempts:>2}x  "
            f"{row.received_at:%Y-%m-%d %H:%M:%S}  {event}  {row.delivery_id}"
        )
        if row.last_error and row.status in ("failed", "dead"):
            line += f"\n         last error: {row.last_error.splitlines()[0][:160]}"
        print(line)
    return 0


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    async def body(runtime: Runtime) -> bool:
        async with runtime.pool.connection() as conn:
            return await inbox.replay(conn, runtime.queue, args.id, actor="cli")

    if not with_runtime(settings, body):
        raise Exit(
            1, f"inbox {args.id} is not a failed or dead delivery (see `persais inbox list`)"
        )
    print(f"inbox {args.id} queued again")
    return 0
