"""Grant changes in a pull request: what an agent's manifest adds or widens against the base
branch's, said on the manifest's changed lines so a human reviewer sees what the agent asks
for before anyone deploys it (a Deploy that grants it needs an admin).

Only the manifests are read (`agent.toml`, at the head and at the base), never the code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath

from app.agents import grants
from app.agents.grants import Change
from app.agents.manifest import ManifestError, parse_manifest
from app.review.diff import Diff, FileDiff
from app.review.findings import Finding

_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z_][A-Za-z0-9_.\s]*?)\s*\]\]?\s*(?:#.*)?$")


def manifests(diff: Diff) -> list[str]:
    """The agents' manifests a change adds or edits."""
    return sorted(
        f.path for f in diff.files.values() if f.status != "removed" and _agent_of(f.path)
    )


def _agent_of(path: str) -> str | None:
    parts = PurePosixPath(path).parts
    if len(parts) == 4 and parts[:2] == ("dynamic", "agents") and parts[3] == "agent.toml":
        return parts[2]
    return None


def findings(diff: Diff, head: Mapping[str, str], base: Mapping[str, str]) -> list[Finding]:
    """One warning per grant a manifest adds or widens. `head`: the manifests' text at the
    head; `base`: at the base branch (absent: the agent is new there)."""
    found: list[Finding] = []
    for path in manifests(diff):
        name, text, file = _agent_of(path), head.get(path), diff.get(path)
        if name is None or text is None or file is None:
            continue
        try:
            after = parse_manifest(text, name).permissions.to_json()
        except ManifestError:
            continue  # an invalid manifest grants nothing: its agent is quarantined at load
        for change in grants.widened({name: _held(base.get(path), name)}, {name: after}):
            start, line = _where(change, file, text)
            found.append(
                Finding(
                    path, line, "warning",
                    f"this agent asks for {change.capability} → {change.what} ({change.how}). "
                    "A Deploy that grants it needs an admin's press.",
                    "grants", f"grant.{change.capability}:{change.what}", start_line=start,
                )
            )  # fmt: skip
    return found


def _held(text: str | None, name: str) -> dict[str, object]:
    if text is None:
        return {}
    try:
        return parse_manifest(text, name).permissions.to_json()
    except ManifestError:  # the base's manifest granted nothing
        return {}


def _where(change: Change, file: FileDiff, text: str) -> tuple[int | None, int | None]:
    """(first, last) changed lines saying the grant: the line naming the host or device,
    else the added lines of its table, else the file's first added line (None: none)."""
    lines = text.splitlines()
    added = sorted(n for n in file.added if 0 < n <= len(lines))
    if not added:
        return None, None
    table = _table(change, lines)
    if change.capability == "http":
        named = [n for n in added if f'"{change.what}"' in lines[n - 1]]
        if named:
            return None, named[0]
    inside = [n for n in added if table[0] <= n <= table[1]] if table else []
    if inside:
        return (inside[0] if len(inside) > 1 else None), inside[-1]
    return None, added[0]


def _table(change: Change, lines: list[str]) -> tuple[int, int] | None:
    """The lines (first, last; 1-based) of the table that holds the grant."""
    tables: list[tuple[str, int]] = []
    for number, line in enumerate(lines, 1):
        header = _HEADER.match(line)
        if header:
            tables.append((re.sub(r"\s+", "", header.group(1)), number))
    spans = []
    for i, (key, first) in enumerate(tables):
        last = (tables[i + 1][1] - 1) if i + 1 < len(tables) else len(lines)
        while last > first and not lines[last - 1].strip():
            last -= 1  # the blank lines before the next table are not this one's
        spans.append((key, first, last))
    wanted = f"permissions.{change.capability}"
    device = change.what.split(" ", 1)[0] if change.capability == "modbus" else None
    for key, first, last in spans:
        if device is not None and key == "permissions.modbus.devices":
            body = "\n".join(lines[first - 1 : last])
            if re.search(rf'^\s*name\s*=\s*"{re.escape(device)}"', body, re.M):
                return first, last
        elif device is None and key == wanted:
            return first, last
    return None
