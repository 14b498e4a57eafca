"""How `persais` reads its arguments: a short help when called alone, `--version`, and a
typo answered with the nearest command in one line instead of the whole usage.

argparse's own answer to `persais sevre` is every command in braces and no suggestion
(Python 3.14 adds `suggest_on_error`; Persais runs on 3.11).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

_UNRECOGNIZED = "unrecognized arguments: "
_INVALID_CHOICE = re.compile(r"invalid choice: '(?P<given>[^']*)' \(choose from (?P<choices>.*)\)")


class PersaisParser(argparse.ArgumentParser):
    """Subparsers are made of this class too, so `persais pr shwo` is answered the same way."""

    def error(self, message: str) -> NoReturn:
        if message.startswith(_UNRECOGNIZED):
            self.exit(2, f"{self._unknown_options(message)}\n{self._see_help()}\n")
        found = _INVALID_CHOICE.search(message)
        if found is None:
            self.exit(2, f"{self.prog}: {message}\n{self._see_help()}\n")
        given = found.group("given")
        choices = [c.strip().strip("'") for c in found.group("choices").split(",")]
        nearest = difflib.get_close_matches(given, choices, n=1, cutoff=0.5)
        what = "command" if set(choices) <= self._command_names() else "choice"
        hint = f"; did you mean '{nearest[0]}'?" if nearest else ""
        self.exit(2, f"{self.prog}: unknown {what} '{given}'{hint}\n{self._see_help()}\n")

    def _unknown_options(self, message: str) -> str:
        """argparse reports these at the top, so every command's options are candidates."""
        given = message.removeprefix(_UNRECOGNIZED).split()
        flags = [word for word in given if word.startswith("-")]
        if not flags:
            return f"{self.prog}: {message}"
        known = sorted(_option_strings(self))
        said = []
        for flag in flags:
            name = flag.split("=", 1)[0]
            nearest = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            said.append(
                f"{self.prog}: unknown option '{name}'"
                + (f"; did you mean '{nearest[0]}'?" if nearest else "")
            )
        return "\n".join(said)

    def _command_names(self) -> set[str]:
        return {
            name
            for action in self._actions
            if isinstance(action, argparse._SubParsersAction)
            for name in action.choices
        }

    def _see_help(self) -> str:
        return f"'{self.prog} -h' lists what it takes"


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    found: set[str] = set()
    for action in parser._actions:
        found.update(option for option in action.option_strings if option.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _option_strings(sub)
    return found


def short_help(parser: argparse.ArgumentParser) -> str:
    """`persais` alone: one line per command, not argparse's full usage."""
    lines = [
        f"usage: {parser.prog} [-v] [--version] COMMAND ...",
        "",
        (parser.description or "").strip().splitlines()[0],
        "",
        "commands:",
    ]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            width = max(len(choice.dest) for choice in action._choices_actions)
            for choice in action._choices_actions:
                lines.append(f"  {choice.dest.ljust(width)}  {choice.help or ''}".rstrip())
    lines += ["", f"'{parser.prog} COMMAND -h' tells more; start with '{parser.prog} serve'."]
    return "\n".join(lines)


class VersionAction(argparse.Action):
    """`--version`: the build is looked up only when asked (git may take a moment)."""

    def __init__(
        self, option_strings: Sequence[str], dest: str, describe: Callable[[], str], **kw: Any
    ) -> None:
        super().__init__(option_strings, dest, nargs=0, **kw)
        self.describe = describe

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(self.describe())
        parser.exit(0)


def print_short_help(parser: argparse.ArgumentParser) -> int:
    print(short_help(parser), file=sys.stdout)
    return 0
