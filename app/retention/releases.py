"""Which releases are kept, and the prune of release folders on this machine's disk.

Kept: the release in service, its rollback target, and the last `releases_keep` cut (a
deploy going on now is the newest), plus the release this process was pinned to
(PERSAIS_RELEASE). A folder is only a cache of `dynamic/` at a commit: should an older
release ever be served again, `app.deploy.files.materialise` unpacks it again from git.
Each machine prunes its own disk when its worker takes the run (a Fly machine's disk is
fresh after every restart anyway).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

from app.agents import grants
from app.deploy import files, ledger
from app.deploy.ledger import Release

_SHA = re.compile(r"^[0-9a-f]{40}$")
SCRATCH_SECONDS = 24 * 3600  # a half-unpacked folder (`.<sha>.<hex>`) this old was abandoned
# A deploy unpacks its merge commit (to read its grants) before the release is cut: a
# folder this young may belong to a deploy in progress, whatever the ledger says yet.
YOUNG_SECONDS = 3600


@dataclass(frozen=True)
class Kept:
    releases: list[Release]

    @property
    def shas(self) -> set[str]:
        return {r.sha for r in self.releases if r.sha and r.source == "merge"}

    def agents(self) -> set[str] | None:
        """Every agent a kept release holds; None when a kept release was cut before
        grants were recorded, and so cannot say which agents it holds."""
        names: set[str] = set()
        for release in self.releases:
            if release.grants is None:
                return None
            names |= set(release.grants)
        return names


async def kept(conn: AsyncConnection[Any], keep: int) -> Kept:
    live = await ledger.current(conn)
    target = await ledger.previous_good(conn, live) if live is not None else None
    recent = await ledger.history(conn, limit=keep)
    chosen: dict[int, Release] = {}
    for release in [live, target, *recent]:
        if release is not None:
            chosen.setdefault(release.id, release)
    return Kept(sorted(chosen.values(), key=lambda r: r.id))


def image_agents(folder: Path) -> set[str]:
    """The agents the image (or checkout) ships: their state is never pruned."""
    named = set(grants.of_folder(folder))
    if folder.is_dir():
        named |= {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
    return named


def prune_folders(home: Path, keep: set[str], *, dry_run: bool = False) -> int:
    """Remove release folders not in `keep` (unless made within the hour), and scratch
    folders left by a crash."""
    root = home / "releases"
    if not root.is_dir():
        return 0
    removed = 0
    for path in sorted(root.iterdir()):
        if _SHA.match(path.name):
            doomed = path.name not in keep and _age(path) > YOUNG_SECONDS
        else:  # `.<sha>.<hex>`: being unpacked now, or abandoned by a crash long ago
            doomed = path.name.startswith(".") and _age(path) > SCRATCH_SECONDS
        if doomed and path.is_dir():
            if not dry_run:
                files.remove(path)
            removed += 1
    return removed


def _age(path: Path) -> float:
    return time.time() - path.stat().st_mtime
