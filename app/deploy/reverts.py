"""Rolled-back agents that a base branch still holds.

A rollback moves the pointer; the merge it undid stays on the base branch until its revert
is merged. A release cut from such a base would serve the rolled-back agent again, so a
deploy is refused while the base holds one (the local forge merges the revert as part of the
rollback; on GitHub a person merges the revert pull request), and the Deploy card says so.

"Holds" is exact: the agent's folder on the base is the very tree the rolled-back release
had. A revert (or any later change to the agent) makes it differ; a later release that put
the agent in service again on purpose releases it from the rollback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from app.deploy import files, ledger
from mechanic.workspace import git

AGENTS = "dynamic/agents"


@dataclass(frozen=True)
class Held:
    agent: str
    release: int  # the release it was rolled back in
    revert: int | None  # the revert pull request opened for it, if any

    def line(self, base: str) -> str:
        then = (
            f"merge the revert PR #{self.revert} first"
            if self.revert is not None
            else "revert it first"
        )
        return f"{base} still holds {self.agent}, rolled back in release {self.release}: {then}"


async def held(
    pool: AsyncConnectionPool, forge: Any, ref: str, *, deploying: frozenset[str] = frozenset()
) -> list[Held]:
    """The rolled-back agents commit `ref` still holds, leaving out `deploying` (the agents
    the change at hand touches: putting those in service is the change's own business)."""
    async with pool.connection() as conn:
        releases = await ledger.went_live(conn)
        reverts = await _revert_pulls(conn)
    rolled_back = [r for r in releases if r.status == "rolled_back" and r.sha]
    if not rolled_back:
        return []
    repo: Path = await forge.repository()
    touched = {r.id: files.agents_touched(await forge.changed_paths(r.sha)) for r in releases}
    found: list[Held] = []
    for release in rolled_back:
        again = set().union(
            *(touched[r.id] for r in releases if r.id > release.id and r.status != "rolled_back")
        )
        for agent in sorted(touched[release.id] - again - deploying):
            assert release.sha is not None
            was = await _tree(repo, release.sha, agent)
            if was is not None and was == await _tree(repo, ref, agent):
                found.append(Held(agent, release.id, reverts.get(release.id)))
    return found


async def touched_by_pull(forge: Any, pull: Any) -> frozenset[str]:
    """The agents open pull request `pull` (a PullState) touches against its base."""
    repo: Path = await forge.repository()
    present = await git("cat-file", "-t", pull.head_sha, cwd=repo, check=False)
    if present.strip() != "commit":
        await forge.pull_request(pull.number)  # on GitHub: brings its branch into the mirror
    diff = await git("diff", "--name-only", "-z", f"{pull.base}...{pull.head_sha}", cwd=repo)
    return frozenset(files.agents_touched([p for p in diff.split("\0") if p]))


async def card(pool: AsyncConnectionPool, forge: Any, number: int) -> list[str]:
    """The Deploy card's warnings for open pull request `number`: each rolled-back agent its
    base still holds (a deploy is refused until the revert is merged)."""
    async with pool.connection() as conn:
        if not any(r.status == "rolled_back" for r in await ledger.went_live(conn)):
            return []
    pull = await forge.pull_state(number)
    if pull.state != "open":
        return []
    deploying = await touched_by_pull(forge, pull)
    found = await held(pool, forge, f"refs/heads/{pull.base}", deploying=deploying)
    return [f"⚠ {h.line(pull.base)}" for h in found]


async def _tree(repo: Path, ref: str, agent: str) -> str | None:
    out = await git("rev-parse", "--verify", "-q", f"{ref}:{AGENTS}/{agent}", cwd=repo, check=False)
    return out.strip() or None


async def _revert_pulls(conn: Any) -> dict[int, int]:
    """Release id -> the revert pull request last opened for it."""
    cur = await conn.execute(
        "SELECT action, subject, detail->>'pr' FROM audit_log"
        " WHERE action IN ('release.revert_opened', 'release.reverted') ORDER BY id"
    )
    found: dict[int, int] = {}
    for action, subject, pr in await cur.fetchall():
        kind, _, ident = str(subject).partition(":")
        if kind != "release" or not ident.isdigit():
            continue
        if action == "release.reverted":  # merged: no longer the thing to do
            found.pop(int(ident), None)
        elif pr is not None and str(pr).isdigit():
            found[int(ident)] = int(pr)
    return found
