"""What a deploy would grant, against the release in service.

A change's grants are read from the manifests at its commit (`agent.toml`, never the code),
for the agents the change touches; the release in service's are in the ledger. What the
change adds or widens (`app.agents.grants.widened`) needs an admin's Deploy. The Deploy
card, the pull request body and a refusal all say it the same way:
"weather: http → api.open-meteo.com (new)".
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from app.agents import grants
from app.agents.grants import Change, Grants
from app.agents.manifest import ManifestError, parse_manifest
from app.deploy import files, ledger, reverts
from app.settings import Settings
from mechanic.workspace import git

log = logging.getLogger(__name__)
AGENTS = "dynamic/agents"
NONE_NEW = "grants: none new"

Lines = Callable[[Path, str], Awaitable[list[str]]]  # (worktree, base branch) -> changes


async def live(conn: AsyncConnection[Any], settings: Settings) -> Grants:
    """What the release in service grants; before the first release, the image's own agents
    (what the ledger records for them when anything is first deployed)."""
    release = await ledger.current(conn)
    if release is None:
        return grants.of_folder(settings.resolved_agents_dir())
    return release.granted


async def asked(repository: Path, head: str, base: str) -> dict[str, dict[str, Any] | None]:
    """The grants of every agent the change from `base` to `head` touches, as `head` has them
    (None: the change removes the agent, or its manifest is invalid and grants nothing)."""
    diff = await git(
        "diff", "--name-only", "-z", f"{base}...{head}", "--", AGENTS, cwd=repository
    )  # fmt: skip
    touched = files.agents_touched([p for p in diff.split("\0") if p])
    if not touched:
        return {}
    listed = await git("ls-tree", "-r", "--name-only", "-z", head, "--", AGENTS, cwd=repository)
    present = set(listed.split("\0"))
    found: dict[str, dict[str, Any] | None] = {}
    for name in sorted(touched):
        path = f"{AGENTS}/{name}/agent.toml"
        found[name] = None
        if path in present:
            text = await git("cat-file", "blob", f"{head}:{path}", cwd=repository)
            with contextlib.suppress(ManifestError):  # quarantined at load: grants nothing
                found[name] = parse_manifest(text, name).permissions.to_json()
    return found


async def changes(
    pool: AsyncConnectionPool, settings: Settings, repository: Path, head: str, base: str
) -> list[Change]:
    """What the change from `base` to `head` adds or widens against the release in service."""
    touched = await asked(repository, head, base)
    async with pool.connection() as conn:
        before = await live(conn, settings)
    return grants.widened(before, grants.overlaid(before, touched))


async def of_pull(
    pool: AsyncConnectionPool, settings: Settings, forge: Any, number: int
) -> list[Change]:
    """What pull request `number` would add or widen if it were deployed now: its head
    against its base while it is open, its merge commit once merged."""
    pull = await forge.pull_state(number)
    repository: Path = await forge.repository()
    if pull.state == "merged" and pull.merge_sha:
        return await changes(pool, settings, repository, pull.merge_sha, f"{pull.merge_sha}^")
    present = await git("cat-file", "-t", pull.head_sha, cwd=repository, check=False)
    if present.strip() != "commit":
        await forge.pull_request(number)  # on GitHub: brings its branch into the mirror
    return await changes(pool, settings, repository, pull.head_sha, pull.base)


def card(found: list[Change]) -> list[str]:
    """The Deploy card's lines (the chat)."""
    if not found:
        return [NONE_NEW]
    return [
        "🔑 grants this release adds or widens (an admin must deploy it):",
        *(f"  {change}" for change in found),
    ]


async def card_of_pull(
    pool: AsyncConnectionPool, settings: Settings, forge: Any, number: int
) -> list[str]:
    """The Deploy card's lines for pull request `number`; a card is shown all the same when
    they cannot be read (the deploy reads them again, and refuses what it must)."""
    try:
        lines = card(await of_pull(pool, settings, forge, number))
    except Exception as exc:  # the forge or git unreachable: the card still goes out
        log.warning("could not read the grants of pull request #%s: %s", number, exc)
        lines = ["grants: could not be read now; the deploy checks them"]
    try:
        lines += await reverts.card(pool, forge, number)
    except Exception as exc:  # as above: the deploy checks it again, and refuses
        log.warning("could not read what the base of #%s still holds: %s", number, exc)
    return lines + sandbox_warning(settings)


def sandbox_warning(settings: Settings) -> list[str]:
    """Said on the Deploy card when agents here would run without bubblewrap."""
    from app.agents.jail import find_bwrap

    if find_bwrap() is not None:
        return []
    if settings.require_sandbox:
        return ["⚠ unsandboxed here (no bubblewrap): PERSAIS_REQUIRE_SANDBOX refuses to run it"]
    return ["⚠ unsandboxed here (no bubblewrap): the agent would run with limits only"]


def refusal(found: list[Change]) -> str:
    """Why a person who is not an admin may not deploy this release."""
    return "this release grants " + "; ".join(map(str, found)) + "; an admin must deploy it"


def for_worktrees(pool: AsyncConnectionPool, settings: Settings) -> Lines:
    """What the Mechanic's pull request body lists: the change in a job's worktree (its
    committed HEAD against the base branch), against the release in service."""

    async def lines(worktree: Path, base: str) -> list[str]:
        return [str(change) for change in await changes(pool, settings, worktree, "HEAD", base)]

    return lines
