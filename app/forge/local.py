"""The local forge: the home repository as a bare git repository in PERSAIS_HOME, with pull
requests recorded in Postgres. The whole Mechanic loop runs with no GitHub account."""

from __future__ import annotations

import asyncio
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from mechanic.forge import PullRequest
from mechanic.workspace import git


class LocalForge:
    def __init__(
        self, pool: AsyncConnectionPool, home: Path, source: Path, name: str = "persais"
    ) -> None:
        self.pool = pool
        self.bare = home / "forge" / f"{name}.git"
        self.source = source  # the checkout the forge starts from (Persais's own)
        self.name = name
        self._lock = asyncio.Lock()

    async def repository(self) -> Path:
        async with self._lock:
            if not (self.bare / "HEAD").exists():
                self.bare.parent.mkdir(parents=True, exist_ok=True)
                await git(
                    "clone", "-q", "--bare", str(self.source), str(self.bare), cwd=self.bare.parent
                )
        return self.bare

    def url(self, number: int) -> str:
        return f"local://{self.name}/pull/{number}"

    async def publish(
        self, *, job_id: str, branch: str, head_sha: str, base: str, title: str, body: str
    ) -> PullRequest:
        # The worktree was made from the bare repository: its commit is already there.
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO pull_requests"
                " (repository, job_id, branch, base, head_sha, title, body)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (job_id) DO UPDATE SET head_sha = EXCLUDED.head_sha,"
                " updated_at = now() RETURNING number",
                (self.name, job_id, branch, base, head_sha, title, body),
            )
            row = await cur.fetchone()
        assert row is not None
        number = int(row[0])
        return PullRequest(number=number, url=self.url(number), branch=branch, head_sha=head_sha)

    async def pull_request(self, number: int) -> PullRequest:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT branch, head_sha FROM pull_requests"
                " WHERE repository = %s AND number = %s AND state = 'open'",
                (self.name, number),
            )
            row = await cur.fetchone()
        if row is None:
            raise LookupError(f"pull request #{number} is not open")
        await self.repository()
        return PullRequest(number=number, url=self.url(number), branch=row[0], head_sha=row[1])

    async def update(self, pull: PullRequest) -> None:
        # The worktree's commit is already on the branch in the bare repository.
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE pull_requests SET head_sha = %s, updated_at = now()"
                " WHERE repository = %s AND number = %s",
                (pull.head_sha, self.name, pull.number),
            )

    async def withdraw(self, *, job_id: str, branch: str) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE pull_requests SET state = 'closed', updated_at = now()"
                " WHERE job_id = %s AND state = 'open' RETURNING branch",
                (job_id,),
            )
            branches = {row[0] for row in await cur.fetchall()} | ({branch} if branch else set())
        if (self.bare / "HEAD").exists():
            for name in sorted(branches):
                await git("branch", "-D", name, cwd=self.bare, check=False)
