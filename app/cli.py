"""`persais`: the command line, and the composition root of every process it starts.

Each topic's subcommands live in `app/commands/`; this module reads the settings once and
turns what goes wrong into one line and an exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from app.cli_parser import PersaisParser, VersionAction, print_short_help
from app.commands import (
    console,
    conversation,
    deliveries,
    forge,
    jobs,
    pulls,
    retention,
    service,
    setup,
    telegram,
)
from app.commands.running import Exit
from app.settings import SettingsError, load_settings

# These log at PERSAIS_LOG_LEVEL; every other command at WARNING unless `-v`, so its own
# output is not buried under INFO lines.
LONG_RUNNING = frozenset({"serve", "worker"})


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        sys.exit(print_short_help(parser))
    try:
        env_file = _env_file()
        settings = load_settings(env_file=env_file)
        quiet = args.command not in LONG_RUNNING and not args.verbose
        logging.basicConfig(
            level="WARNING" if quiet else settings.log_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        code = args.func(settings, args)
    except SettingsError as exc:
        # `persais doctor` runs anyway: a half-done configuration is when it is needed.
        despite = getattr(args, "despite_bad_settings", None)
        if despite is not None:
            sys.exit(despite(env_file, args))
        print(f"persais: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exit as exc:
        print(f"persais: {exc.message}", file=sys.stderr)
        sys.exit(exc.code)
    sys.exit(code)


def _env_file() -> Path | None:
    return Path(".env") if Path(".env").is_file() else None


def _version() -> str:
    from app.version import build_info

    try:
        commit = load_settings(env_file=_env_file()).git_commit
    except SettingsError:
        commit = None  # a broken configuration still has a version
    build = build_info(commit)
    return f"persais {build.package} (commit {build.commit})"


def _parser() -> argparse.ArgumentParser:
    parser = PersaisParser(
        prog="persais",
        description="Persais: a GitHub App and Telegram bot that changes its own code.",
    )
    parser.add_argument(
        "--version", action=VersionAction, describe=_version,
        help="show the version and the git commit it was built from",
    )  # fmt: skip
    parser.add_argument(
        "-v", "--verbose", action="store_true",
        help="log at PERSAIS_LOG_LEVEL (one-shot commands log only warnings by default)",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    topics = (
        service, conversation, jobs, pulls, forge, console, telegram, deliveries, retention, setup,
    )  # fmt: skip
    for topic in topics:
        topic.register(commands)
    return parser
