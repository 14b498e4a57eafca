"""Which release this process runs: the release synced at boot (PERSAIS_RELEASE, else the
one in service, else the image's own agents), followed when another local process puts a
new one in service, and swapped (one swap at a time) by a deploy or a rollback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from app.agents.registry import Registry
from app.deploy import files, ledger
from app.deploy.files import ReleaseFiles
from app.deploy.ledger import Release
from app.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Running:
    """The release this process's agents come from."""

    release: Release | None  # None: not in the ledger (the image's agents, or PERSAIS_RELEASE)
    sha: str | None  # None: the image's own agents
    agents: Path
    since: datetime = field(default_factory=lambda: datetime.now(UTC))
    problem: str = ""  # why it is not the release it should be

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.release.id if self.release else None,
            "sha": self.sha,
            "source": "merge" if self.sha else "image",
            "since": self.since.isoformat(timespec="seconds"),
            "problem": self.problem or None,
        }


class ThisProcess:
    def __init__(
        self,
        settings: Settings,
        pool: AsyncConnectionPool,
        registry: Registry,
        forge: Callable[[], Any],
        build_commit: str | None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.registry = registry
        self._forge = forge
        self.build_commit = build_commit
        self.running = Running(None, None, settings.resolved_agents_dir())
        # Swaps in this process one at a time: a deploy loading, a follow, a rollback.
        self.swap = asyncio.Lock()

    async def boot(self) -> Running:
        """Before serving: `dynamic/` at PERSAIS_RELEASE, else (local deployer) the release
        in service, else the image's own agents. A release that cannot be synced leaves the
        image's agents running and says so in /ready (the Fly deployer then rolls back)."""
        sha, release = self.settings.release, None
        if sha is None and not self.settings.fly_configured:
            async with self.pool.connection() as conn:
                release = await ledger.current(conn)
            sha = release.sha if release is not None and release.source == "merge" else None
        if sha is None:
            self.running = Running(release, None, self.settings.resolved_agents_dir())
            return self.running
        try:
            synced = await self.files(sha)
        except Exception as exc:  # the forge unreachable, a commit that is not there
            log.exception("could not sync dynamic/ at release %s", sha)
            self.running = Running(
                None, None, self.settings.resolved_agents_dir(),
                problem=f"release {sha[:12]} could not be synced: {str(exc)[:300]}",
            )  # fmt: skip
            return self.running
        self.running = Running(release, sha, synced.agents)
        return self.running

    async def files(self, sha: str) -> ReleaseFiles:
        forge = self._forge()
        return await files.materialise(await forge.repository(), sha, self.settings.home)

    async def serve(self, release: Release) -> None:
        """Put a release that served before in service here (the caller holds `swap`):
        no verification, it was verified when it first went live."""
        agents = (
            (await self.files(release.sha)).agents
            if release.sha and release.source == "merge"
            else self.settings.resolved_agents_dir()
        )
        staged = await self.registry.stage(agents, release.sha or self.image_commit)
        await self.registry.promote(staged)
        self.running = Running(release, release.sha if release.source == "merge" else None, agents)

    async def follow(self) -> bool:
        """Local deployer, several processes: load the release in service if another
        process put it there. True if this process swapped."""
        if self.settings.fly_configured or self.settings.release is not None:
            return False
        async with self.pool.connection() as conn:
            current = await ledger.current(conn)
        if current is None or (self.running.release and self.running.release.id == current.id):
            return False
        async with self.swap:
            # Read again: a deploy in this process may have swapped while we waited, and the
            # release seen before the wait is then no longer the one in service.
            async with self.pool.connection() as conn:
                current = await ledger.current(conn)
            if current is None or (self.running.release and self.running.release.id == current.id):
                return False
            await self.serve(current)
        log.info("now running %s (put in service by another process)", current.label())
        return True

    @property
    def image_commit(self) -> str:
        return self.build_commit or "image"

    def where(self) -> str:
        running = self.running
        at = running.since.strftime("%Y-%m-%d %H:%M:%S UTC")
        what = running.release.label() if running.release else (
            f"commit {running.sha[:12]}" if running.sha else "the image's own agents"
        )  # fmt: skip
        text = f"This process runs {what}, loaded {at}."
        return text + (f"\n⚠ {running.problem}" if running.problem else "")
