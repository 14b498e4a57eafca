"""What a release changed against the release it was cut on: agents added, changed, removed.

Read from git when the home repository's copy in PERSAIS_HOME holds both commits (the local
forge's bare repository, or the GitHub forge's mirror): `dynamic/agents/<name>/` folders that
differ between them. Otherwise from the ledger alone: a release's grants name every agent
whose manifest was valid, so the names it gained or lost are what was added or removed (what
changed inside an agent is then unknown). Read-only: nothing here fetches or writes.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from app.deploy.ledger import Release
from app.settings import Settings

AGENTS = "dynamic/agents/"


@dataclass(frozen=True)
class Changes:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    against: str = ""  # what it was compared with: a commit, or "the ledger"
    note: str = ""  # why the answer is partial, if it is

    @property
    def none(self) -> bool:
        return not (self.added or self.changed or self.removed)


def repository(settings: Settings) -> Path:
    """Where PERSAIS_HOME keeps the home repository (see app/forge/local.py, github.py)."""
    if settings.home_repo:
        owner, _, name = settings.home_repo.partition("/")
        return settings.home / "forge" / "github" / owner / f"{name}.git"
    return settings.home / "forge" / "persais.git"


async def of_release(settings: Settings, release: Release, previous: Release | None) -> Changes:
    """What `release` changed against `previous` (the release in service when it was cut)."""
    bare = repository(settings)
    if release.sha and release.source == "merge" and (bare / "HEAD").exists():
        bases = [previous.sha] if previous is not None and previous.sha else []
        bases.append(f"{release.sha}^")  # the merge's own parent: what the merge brought
        for base in bases:
            out = await _diff(bare, base, release.sha)
            if out is not None:  # None: the image's commit may not be in the forge
                return _from_diff(out, against=base)
    return _from_ledger(release, previous)


async def _diff(bare: Path, base: str, sha: str) -> str | None:
    """`git diff --name-status` of dynamic/agents/ between two commits; None if git cannot.
    (Its own small call: the web process, which serves the console, loads no `mechanic`.)"""
    executable = shutil.which("git")
    if executable is None:
        return None
    proc = await asyncio.create_subprocess_exec(
        executable, "diff", "--no-renames", "--name-status", base, sha, "--", AGENTS,
        cwd=bare, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env={"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(bare)},
    )  # fmt: skip
    out, _ = await proc.communicate()
    return out.decode(errors="replace") if proc.returncode == 0 else None


def _from_diff(out: str, *, against: str) -> Changes:
    touched: dict[str, set[str]] = {}
    for line in out.splitlines():
        status, _, path = line.partition("\t")
        if not path.startswith(AGENTS):
            continue
        name, _, rest = path[len(AGENTS) :].partition("/")
        if not rest or name.startswith((".", "_")):
            continue
        kind = "changed"
        if rest == "agent.toml" and status in ("A", "D"):
            kind = "added" if status == "A" else "removed"
        touched.setdefault(name, set()).add(kind)
    added: list[str] = []
    changed: list[str] = []
    removed: list[str] = []
    for name in sorted(touched):
        kinds = touched[name]
        (added if "added" in kinds else removed if "removed" in kinds else changed).append(name)
    shown = against if against.endswith("^") else against[:12]
    return Changes(added=added, changed=changed, removed=removed, against=shown)


def _from_ledger(release: Release, previous: Release | None) -> Changes:
    if release.source == "image" or previous is None:
        return Changes(against="", note="the first release: every agent it has is new")
    if release.grants is None or previous.grants is None:
        return Changes(against="the ledger", note="this release was cut before the ledger kept "
                       "its agents, and the repository is not here to compare")  # fmt: skip
    now, before = set(release.granted), set(previous.granted)
    return Changes(
        added=sorted(now - before), removed=sorted(before - now), against="the ledger",
        note="which agents changed inside is not known without the repository",
    )  # fmt: skip
