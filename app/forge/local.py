"""The local forge: the home repository as a bare git repository in PERSAIS_HOME, with pull
requests recorded in Postgres. The whole Mechanic loop runs with no GitHub account."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from app.forge.pull_links import pull_link
from mechanic.forge import MergeRefused, PullRequest, PullState
from mechanic.sandbox import search_path
from mechanic.workspace import git

# Who the local forge says made its merge commits (GitHub says the App).
MERGER = {
    "GIT_AUTHOR_NAME": "Persais", "GIT_AUTHOR_EMAIL": "persais@localhost",
    "GIT_COMMITTER_NAME": "Persais", "GIT_COMMITTER_EMAIL": "persais@localhost",
}  # fmt: skip


class LocalForge:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        home: Path,
        source: Path,
        name: str = "persais",
    ) -> None:
        self.pool = pool
        self.bare = home / "forge" / f"{name}.git"
        self.source = source  # the checkout the forge starts from (Persais's own)
        self.name = name
        self._lock = asyncio.Lock()

    async def repository(self) -> Path:
        async with self._lock:
            if not (self.bare / "HEAD").exists():
                # Cloned aside and renamed into place: another forge object (or process)
                # making it at the same moment finds it whole or not at all.
                self.bare.parent.mkdir(parents=True, exist_ok=True)
                aside = self.bare.with_name(f".{self.bare.name}-{secrets.token_hex(4)}")
                await git("clone", "-q", "--bare", str(self.source), str(aside),
                          cwd=self.bare.parent)  # fmt: skip
                try:
                    aside.rename(self.bare)
                except OSError:  # made meanwhile by someone else: theirs is as good
                    shutil.rmtree(aside, ignore_errors=True)
        return self.bare

    def url(self, number: int) -> str:
        """The command that shows it: surfaces make it the console's page as they show it
        (`pull_links.shown`)."""
        return pull_link(number)

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

    async def pull_state(self, number: int) -> PullState:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT state, branch, base, head_sha, merge_sha FROM pull_requests"
                " WHERE repository = %s AND number = %s",
                (self.name, number),
            )
            row = await cur.fetchone()
        if row is None:
            raise LookupError(f"there is no pull request #{number}")
        state, branch, base, head, merged = row
        if state == "open":  # the branch as it is now: anyone may have pushed to it
            repo = await self.repository()
            head = (await git("rev-parse", f"refs/heads/{branch}", cwd=repo)).strip()
        return PullState(number, self.url(number), state, branch, base, head, merged)

    async def merge(self, number: int, *, sha: str, title: str) -> str:
        """Squash-merge, as GitHub does: one new commit on the base whose tree is the base
        and the branch merged, made only if the branch's head is still `sha`."""
        pull = await self.pull_state(number)
        if pull.state == "merged" and pull.merge_sha:
            return pull.merge_sha
        if pull.state != "open":
            raise MergeRefused(f"pull request #{number} is {pull.state}")
        repo = await self.repository()
        async with self._lock:
            head = (await git("rev-parse", f"refs/heads/{pull.branch}", cwd=repo)).strip()
            if head != sha:
                raise MergeRefused(f"the head of #{number} is {head[:12]}, not {sha[:12]}")
            base = (await git("rev-parse", f"refs/heads/{pull.base}", cwd=repo)).strip()
            async with scratch(repo, base) as tree:
                if not await run(tree, "merge", "--squash", "--no-commit", head):
                    raise MergeRefused(f"#{number} does not merge cleanly into {pull.base}")
                if not await run(tree, "commit", "-q", "--no-verify", "-m", f"{title} (#{number})"):
                    raise MergeRefused(f"#{number} changes nothing on {pull.base}")
                merged = (await git("rev-parse", "HEAD", cwd=tree)).strip()
            # Compare-and-swap: a base that moved meanwhile fails the update, not the history.
            await git("update-ref", f"refs/heads/{pull.base}", merged, base, cwd=repo)
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE pull_requests SET state = 'merged', merge_sha = %s, updated_at = now()"
                " WHERE repository = %s AND number = %s AND state = 'open'",
                (merged, self.name, number),
            )
        return merged

    async def checks(self, sha: str) -> list[str]:
        """The local forge runs no CI: the Mechanic's validation is the check."""
        return []

    async def changed_paths(self, sha: str) -> list[str]:
        """The paths a (squash) merge commit changed."""
        repo = await self.repository()
        out = await git("diff-tree", "--no-commit-id", "--name-only", "-r", sha, cwd=repo)
        return [line for line in out.splitlines() if line]

    async def revert_branch(self, sha: str, base: str, branch: str, title: str) -> str:
        """A branch off `base` that undoes commit `sha`; its head."""
        repo = await self.repository()
        async with self._lock:
            return await revert_commit(repo, sha, base, branch, title)


@asynccontextmanager
async def scratch(repo: Path, commit: str) -> AsyncIterator[Path]:
    """A throwaway worktree of a bare repository at `commit` (detached)."""
    path = repo.parent / f".scratch-{secrets.token_hex(4)}"
    await git("worktree", "add", "-q", "--detach", str(path), commit, cwd=repo)
    try:
        yield path
    finally:
        await git("worktree", "remove", "--force", str(path), cwd=repo, check=False)
        shutil.rmtree(path, ignore_errors=True)


async def run(tree: Path, *args: str) -> bool:
    """git in a scratch worktree, as Persais; False when it fails."""
    proc = await asyncio.create_subprocess_exec(
        "git", *args, cwd=tree, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**MERGER, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tree), "PATH": search_path()},
    )  # fmt: skip
    return await proc.wait() == 0


async def revert_commit(repo: Path, sha: str, base: str, branch: str, title: str) -> str:
    """Write, in a bare repository, a commit on `base` that undoes `sha`, as branch
    `branch`; its id."""
    tip = (await git("rev-parse", f"refs/heads/{base}", cwd=repo)).strip()
    async with scratch(repo, tip) as tree:
        if not await run(tree, "revert", "--no-edit", "--no-commit", sha):
            raise MergeRefused(f"{sha[:12]} cannot be reverted cleanly on {base}")
        if not await run(tree, "commit", "-q", "--no-verify", "-m", title):
            raise MergeRefused(f"reverting {sha[:12]} changes nothing on {base}")
        commit = (await git("rev-parse", "HEAD", cwd=tree)).strip()
    await git("update-ref", f"refs/heads/{branch}", commit, cwd=repo)
    return commit
