"""A repository's own ruff configuration, for the static stage.

Read from the default branch only (`.ruff.toml`, `ruff.toml`, then `pyproject.toml`'s
`[tool.ruff]`: ruff's own order), never from the pull request's head, which could otherwise
switch its own findings off. It is the maintainers' file, but it is still kept to what a
check of a scratch folder needs: settings that would reach outside that folder (`extend`,
`cache-dir`, `src` paths that climb out of it) or change what a check does to the files
(`fix`) are dropped, and the rest is written back as the TOML ruff reads with `--config`.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

FILES = (".ruff.toml", "ruff.toml", "pyproject.toml")
MAX_BYTES = 256 * 1024
# Settings that would read or write outside the scratch folder, change the files, pin a
# ruff version, or shape output we parse ourselves.
DROPPED = frozenset({
    "extend", "cache-dir", "required-version", "fix", "fix-only", "unsafe-fixes",
    "show-fixes", "output-format", "format",
})  # fmt: skip
PATHS = ("src", "namespace-packages")  # lists of folders: kept only inside the folder
# (path, ref) -> (text, blob sha), None when absent: `PullOnGitHub.read`.
Reader = Callable[[str, str], Awaitable[tuple[str | None, str | None]]]


@dataclass(frozen=True)
class RuffConfig:
    source: str  # the file it came from, e.g. "pyproject.toml"
    settings: dict[str, Any] = field(default_factory=dict)  # what ruff is given
    dropped: tuple[str, ...] = ()  # the settings left out (see DROPPED, PATHS)
    problem: str = ""  # why it cannot be used ("": it can)

    def toml(self) -> str:
        """The settings as a ruff.toml."""
        return "".join(f"{_key(k)} = {_value(v)}\n" for k, v in self.settings.items())


async def read(reader: Reader, branch: str) -> RuffConfig | None:
    """The ruff configuration on `branch` (the default one); None when it has none."""
    for name in FILES:
        text, _ = await reader(name, branch)
        if text is None:
            continue
        found = parse(name, text)
        if found is not None:
            return found
    return None


def parse(source: str, text: str) -> RuffConfig | None:
    """The configuration in `text`, read from `source`; None for a `pyproject.toml` without
    `[tool.ruff]` (ruff would look further, and so do we)."""
    if len(text.encode()) > MAX_BYTES:
        return RuffConfig(source, problem=f"`{source}` is larger than {MAX_BYTES} bytes")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return RuffConfig(source, problem=f"`{source}` is not valid TOML ({exc})")
    if source == "pyproject.toml":
        tool = data.get("tool")
        ruff: object = tool.get("ruff") if isinstance(tool, dict) else None
        if ruff is None:
            return None
        if not isinstance(ruff, dict):
            return RuffConfig(source, problem="`[tool.ruff]` in pyproject.toml is not a table")
        # Ruff reads the oldest Python a project supports from `requires-python` when the
        # file is a pyproject.toml; the ruff.toml written for the scratch folder would lose
        # it (and ruff would assume 3.10: UP045 on a 3.9 project, seen on the corpus).
        project = data.get("project")
        requires = project.get("requires-python") if isinstance(project, dict) else None
        data = dict(ruff)
        oldest = _oldest_python(requires)
        if "target-version" not in data and oldest is not None:
            data["target-version"] = oldest
    settings, dropped = _kept(data)
    try:
        RuffConfig(source, settings).toml()
    except ValueError as exc:
        return RuffConfig(source, problem=f"`{source}`: {exc}")
    return RuffConfig(source, settings, tuple(dropped))


def _kept(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    settings: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in data.items():
        if key in DROPPED:
            dropped.append(key)
        elif key in PATHS and isinstance(value, list):
            inside = [p for p in value if isinstance(p, str) and _inside(p)]
            if len(inside) < len(value):
                dropped.append(key)
            settings[key] = inside
        elif key == "lint" and isinstance(value, dict):
            lint = {k: v for k, v in value.items() if k not in DROPPED}
            dropped += [f"lint.{k}" for k in value if k in DROPPED]
            settings[key] = lint
        else:
            settings[key] = value
    return settings, dropped


def _oldest_python(requires: object) -> str | None:
    """`">=3.9"` (or `"~=3.9"`, `"==3.9.*"`, `">=3.9,<4"`) as ruff's `"py39"`; None when it
    says no lower bound ruff could use."""
    if not isinstance(requires, str):
        return None
    found = re.search(r"(?:>=|~=|==)\s*3\.(\d+)", requires)
    return f"py3{found.group(1)}" if found else None


def _inside(path: str) -> bool:
    """A relative path that stays inside the folder it is relative to."""
    pure = PurePosixPath(path.replace("\\", "/"))
    return not pure.is_absolute() and ".." not in pure.parts and not path.startswith("~")


def _key(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    """A TOML value: JSON's strings are TOML basic strings; tables are written inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"a setting ruff does not take ({type(value).__name__})")
