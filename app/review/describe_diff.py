"""A pull request described from its diff alone: what each file's change is, which areas it
touches and what a reviewer should look at twice. No model: what is said here is read off
the diff, so it is also the part of a description that holds when a model answers."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import PurePosixPath
from typing import Any

from app.review.diff import Diff, FileDiff
from app.review.model import _defang

MAX_NAMED = 4  # paths or names listed in one line before "and N more"
LARGE = 1000  # changed lines past which a change is worth splitting
_DEFINED = re.compile(r"^\s*(?:async\s+def|def|class|function|func|fn)\s+([A-Za-z_]\w*)")
# (what, globs): files whose change deserves a second look whatever the change is.
_SENSITIVE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("database migrations change; they run once, at the next start, on live data",
     ("*/migrations/*", "migrations/*", "*.sql")),
    ("CI workflows change; they run with the repository's secrets",
     (".github/workflows/*", ".github/actions/*")),
    ("dependencies change", ("pyproject.toml", "*requirements*.txt", "*.lock", "package.json",
                             "package-lock.json", "setup.py", "setup.cfg", "Pipfile")),
    ("deployment files change", ("Dockerfile", "*/Dockerfile", "fly.toml", "deploy/*",
                                 "docker-compose*.yml", "*.service")),
    ("Persais's own configuration changes (it applies once it is on the default branch)",
     (".github/persais.yml",)),
    ("code owners or repository policy change", ("CODEOWNERS", ".github/CODEOWNERS")),
)  # fmt: skip


def counts(diff: Diff, entries: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """path -> (lines added, lines removed): GitHub's own counts (they hold for patches too
    large to show), else the patch's."""
    found = {
        str(e["filename"]): (int(e["additions"]), int(e["deletions"]))
        for e in entries
        if isinstance(e.get("additions"), int) and isinstance(e.get("deletions"), int)
    }
    return {p: found.get(p, (len(f.added), len(f.removed))) for p, f in diff.files.items()}


def summary(diff: Diff, counts: Mapping[str, tuple[int, int]]) -> str:
    if not diff.files:
        return "This pull request changes no files."
    added = sum(a for a, _ in counts.values())
    removed = sum(r for _, r in counts.values())
    statuses = Counter(f.status for f in diff.files.values())
    kinds = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
    areas = Counter(area(path) for path in diff.files)
    where = ", ".join(f"`{cell(a)}` ({n})" for a, n in areas.most_common(6))
    if len(areas) > 6:
        where += f" and {len(areas) - 6} more"
    files = "file" if len(diff.files) == 1 else "files"
    return f"Changes {len(diff.files)} {files} (+{added} -{removed}): {kinds}. Areas: {where}."


def area(path: str) -> str:
    """The folder a file belongs to, two levels deep at most ("(root)" for top-level files)."""
    parts = PurePosixPath(path).parts[:-1]
    return "/".join(parts[:2]) if parts else "(root)"


def walkthrough(
    diff: Diff, counts: Mapping[str, tuple[int, int]], changes: Mapping[str, str]
) -> list[str]:
    """The walkthrough table's lines: file, status, +/-, one line on what changed (the
    model's where it said, else the diff's)."""
    rows = ["| File | Status | +/- | What changed |", "| --- | --- | --- | --- |"]
    for path, file in diff.files.items():
        plus, minus = counts.get(path, (0, 0))
        what = _prose(changes[path]) if path in changes else change(file)
        rows.append(f"| `{cell(path)}` | {file.status} | +{plus} -{minus} | {what} |")
    return rows


def change(file: FileDiff) -> str:
    """One line on a file's change, from its patch."""
    if file.status == "removed":
        return "deleted"
    if file.patch is None:
        moved = f"renamed from `{cell(file.previous_path)}`; " if file.previous_path else ""
        return moved + "no text diff (binary, or too large to show)"
    new, gone = _names(file)
    said = []
    if file.previous_path:
        said.append(f"renamed from `{cell(file.previous_path)}`")
    if file.status == "added":
        lines = len(file.added)
        said.append(f"new file of {lines} line{'s' if lines != 1 else ''}")
    if new:
        said.append("defines " + _listed(new))
    if gone:
        said.append("drops " + _listed(gone))
    touched = [name for name in _touched(file) if name not in new and name not in gone]
    if touched and file.status != "added":
        said.append("changes in " + _listed(touched))
    if not said:
        hunks = len(file.hunks)
        said.append(f"{hunks} hunk{'s' if hunks != 1 else ''} changed")
    return "; ".join(said)


def _names(file: FileDiff) -> tuple[list[str], list[str]]:
    """The names (def, class, function) the change adds and removes."""
    added = [m.group(1) for t in file.added.values() if (m := _DEFINED.match(t))]
    removed = [
        m.group(1)
        for line in (file.patch or "").splitlines()
        if line.startswith("-") and not line.startswith("---") and (m := _DEFINED.match(line[1:]))
    ]
    return [n for n in added if n not in removed], [n for n in removed if n not in added]


def _touched(file: FileDiff) -> list[str]:
    """The definitions whose lines the change adds or removes: the one GitHub names in a
    hunk's header (`@@ … @@ def name(`) until the next definition the hunk shows."""
    found: list[str] = []
    current: str | None = None
    for line in (file.patch or "").splitlines():
        if line.startswith("@@"):
            match = _DEFINED.match(line.split("@@", 2)[-1])
            current = match.group(1) if match else None
            continue
        match = _DEFINED.match(line[1:])
        if match:
            current = match.group(1)
        changed = line[:1] in ("+", "-") and bool(line[1:].strip())
        if changed and current is not None and current not in found:
            found.append(current)
    return found


def _listed(names: list[str]) -> str:
    shown = ", ".join(f"`{cell(n)}`" for n in names[:MAX_NAMED])
    return shown + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")


def risks(diff: Diff, grants: list[str]) -> list[str]:
    """What the diff itself says deserves a second look: agents asking for more, sensitive
    files, deletions, files without a text diff, sheer size."""
    found = list(grants)
    for what, globs in _SENSITIVE:
        hit = [p for p in diff.files if any(fnmatchcase(p, g) for g in globs)]
        if hit:
            found.append(f"{what[0].upper()}{what[1:]}: {_paths(hit)}.")
    removed = [p for p, f in diff.files.items() if f.status == "removed"]
    if removed:
        found.append(f"Files are deleted: {_paths(removed)}.")
    hidden = [p for p, f in diff.files.items() if f.binary]
    if hidden:
        found.append(f"No text diff to read (binary, or too large): {_paths(hidden)}.")
    if diff.changed_lines > LARGE:
        found.append(f"A large change ({diff.changed_lines} lines) is hard to review in one go.")
    return found


def _paths(paths: list[str]) -> str:
    shown = ", ".join(f"`{cell(p)}`" for p in paths[:MAX_NAMED])
    return shown + (f" and {len(paths) - MAX_NAMED} more" if len(paths) > MAX_NAMED else "")


def _prose(text: str) -> str:
    """The model's words (already made safe) inside one cell of a Markdown table."""
    return " ".join(text.split()).replace("|", "\\|")


def cell(text: str) -> str:
    """Text from a pull request (a path, a name) safe inside one cell of a Markdown table
    and inside backticks: one line, no pipe, no backtick, no HTML, no mention."""
    text = " ".join(text.split()).replace("`", "'").replace("|", "\\|")
    return _defang(text.replace("<", "&lt;").replace(">", "&gt;"))
