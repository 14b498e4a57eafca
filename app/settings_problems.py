"""Every problem in the configuration at once, and the settings that remain without them.

`load_settings` stops at the first bad variable, which is right for a process about to run.
`persais doctor` is needed most when the configuration is half done, so it reads leniently:
each variable that does not parse (or a pair that is incomplete) is listed and set back to
its default, and the rest is checked as configured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.settings import Settings, SettingsError

_VARIABLE = re.compile(r"\b[A-Z][A-Z0-9_]{2,}\b")
_ALIASES = {field.alias: name for name, field in Settings.model_fields.items() if field.alias}


@dataclass(frozen=True)
class Problem:
    variables: tuple[str, ...]  # the variables set back to their defaults because of it
    message: str  # one line for a person, starting with the variable's name


def lenient_settings(env_file: Path | None = None) -> tuple[Settings, list[Problem]]:
    """The settings with every bad variable set back to its default, and what was wrong."""
    overrides: dict[str, Any] = {}
    problems: list[Problem] = []
    for _ in range(len(_ALIASES) + 1):  # each round drops at least one variable
        try:
            return Settings(_env_file=env_file, **overrides), problems
        except ValidationError as exc:
            found = [_problem(error) for error in exc.errors(include_url=False)]
        dropped = False
        for problem in found:
            names = {_ALIASES[variable] for variable in problem.variables}
            # "TELEGRAM_BOT_TOKEN: required when TELEGRAM_WEBHOOK_SECRET is set" right after
            # the token was dropped for its shape is our doing, not another problem.
            if not names & overrides.keys():
                problems.append(problem)
            for variable in problem.variables:
                name = _ALIASES[variable]
                if name not in overrides:
                    overrides[name] = Settings.model_fields[name].get_default(
                        call_default_factory=True
                    )
                    dropped = True
        if not dropped:
            break
    raise SettingsError("; ".join(p.message for p in problems) or "the settings do not load")


def _problem(error: Any) -> Problem:
    message = str(error["msg"]).removeprefix("Value error, ")
    location = [str(part) for part in error["loc"]]
    if location:  # one field: its alias is the variable
        name = location[0]
        field = Settings.model_fields.get(name)
        variable = field.alias if field is not None and field.alias else name
        known = (variable,) if variable in _ALIASES else ()  # else it cannot be dropped
        return Problem(known, f"{variable}: {message}")
    # A rule across variables ("X: required when Y is set"): it names them all.
    named = tuple(dict.fromkeys(v for v in _VARIABLE.findall(message) if v in _ALIASES))
    return Problem(named, message)
