"""Writing credentials to disk: a private key only its owner reads, and `.env` merged.

`.env` is the person's file: the lines it holds stay as they are, a variable written here
replaces its own line (or is appended), a copy of the old file is kept next to it, and the
new text is checked by parsing it as Persais will before it replaces the old one.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from dotenv import dotenv_values

_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+-]*$")
PRIVATE = 0o600


class EnvFileError(Exception):
    pass


def write_private_key(directory: Path, app_id: int, pem: str) -> Path:
    """`github-app-<id>.private-key.pem` in `directory`, mode 0600; never over another file."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = (directory / f"github-app-{app_id}.private-key.pem").resolve()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
    except FileExistsError:
        raise EnvFileError(f"{path} exists already; left as it is") from None
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), PRIVATE)
        out.write(pem if pem.endswith("\n") else pem + "\n")
    return path


def merge(path: Path, values: Mapping[str, str]) -> Path | None:
    """Set `values` in the env file at `path` (an empty value unsets a variable), keeping
    every other line; returns where the previous file was copied, None if there was none."""
    old = path.read_text() if path.exists() else ""
    new = render(old, values)
    _check(old, new, values)
    backup = _backup(path, old) if path.exists() else None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), PRIVATE)
        out.write(new)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return backup


def render(old: str, values: Mapping[str, str]) -> str:
    """`old` with each variable of `values` on one line: in place of its first assignment
    (later ones removed, as the last would win), or appended."""
    out: list[str] = []
    done: set[str] = set()
    for key, lines in _entries(old):
        if key is None or key not in values:
            out += lines
        elif key not in done:
            out.append(f"{key}={quote(values[key])}\n")
            done.add(key)
    if out and not out[-1].endswith("\n"):
        out[-1] += "\n"
    missing = [k for k in values if k not in done]
    if missing:
        if out and out[-1].strip():
            out.append("\n")
        out.append(f"# Written by `persais setup github` on {datetime.now(UTC):%Y-%m-%d}.\n")
        out += [f"{k}={quote(values[k])}\n" for k in missing]
    return "".join(out)


def quote(value: str) -> str:
    if _PLAIN.match(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _entries(text: str) -> list[tuple[str | None, list[str]]]:
    """The file as (variable, its lines) and (None, [a comment or blank line]); a quoted
    value may run over several lines, as python-dotenv reads it."""
    lines = text.splitlines(keepends=True)
    entries: list[tuple[str | None, list[str]]] = []
    i = 0
    while i < len(lines):
        found = _ASSIGNMENT.match(lines[i].rstrip("\n"))
        if found is None:
            entries.append((None, [lines[i]]))
            i += 1
            continue
        key, value = found.group(1), found.group(2)
        end = i
        if value[:1] in {'"', "'"} and not _closes(value[1:], value[0]):
            while end + 1 < len(lines) and not _closes(lines[end + 1], value[0]):
                end += 1
            end = min(end + 1, len(lines) - 1)
        entries.append((key, lines[i : end + 1]))
        i = end + 1
    return entries


def _closes(rest: str, mark: str) -> bool:
    escaped = False
    for char in rest:
        if escaped:
            escaped = False
        elif char == "\\" and mark == '"':
            escaped = True
        elif char == mark:
            return True
    return False


def _check(old: str, new: str, values: Mapping[str, str]) -> None:
    """Parse both as Persais will: every variable keeps its value but those being set."""
    before = dotenv_values(stream=io.StringIO(old))
    after = dotenv_values(stream=io.StringIO(new))
    kept = {k: v for k, v in before.items() if k not in values}
    if {k: v for k, v in after.items() if k not in values} != kept or any(
        (after.get(k) or "") != v for k, v in values.items()
    ):
        raise EnvFileError(
            "cannot merge into this .env without changing other lines (an unusual quoting?); "
            "it was left as it is"
        )


def _backup(path: Path, text: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for n in range(100):
        backup = path.with_name(f"{path.name}.bak-{stamp}" + (f"-{n}" if n else ""))
        try:
            fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as out:
            out.write(text)
        return backup
    raise EnvFileError(f"too many backups of {path} this second")
