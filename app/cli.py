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

from app.commands import (
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


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        env_file = Path(".env") if Path(".env").is_file() else None
        settings = load_settings(env_file=env_file)
        logging.basicConfig(
            level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="persais", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    topics = (service, conversation, jobs, pulls, forge, telegram, deliveries, retention, setup)
    for topic in topics:
        topic.register(commands)
    return parser
