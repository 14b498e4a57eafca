"""A job's workspace: a fresh git worktree on its own branch, removed when the job ends."""

from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from mechanic.sandbox import search_path

AUTHOR = ("Persais Mechanic", "mechanic@persais.invalid")


class GitError(RuntimeError):
    pass


async def git(*args: str, cwd: Path, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(
        "git", *args, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd),
             "PATH": search_path()},
    )  # fmt: skip
    out, err = await proc.communicate()
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args[:2])} failed: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


def slugify(text: str, limit: int = 30) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "change"


BRANCH_PREFIX = "mechanic/"


def branch_for(slug: str, job_id: str) -> str:
    """The branch a job works on: `mechanic/<slug>-<job id>`."""
    return f"{BRANCH_PREFIX}{slugify(slug)}-{job_id}"


def job_of(branch: str) -> str | None:
    """The job id a Mechanic branch names (None for any other branch)."""
    if not branch.startswith(BRANCH_PREFIX) or "-" not in branch:
        return None
    return branch.rsplit("-", 1)[1] or None


@dataclass
class Workspace:
    repository: Path  # the local repository the worktree belongs to (bare or not)
    path: Path
    branch: str
    base: str

    @classmethod
    async def create(
        cls, repository: Path, root: Path, *, job_id: str, slug: str, base: str = "main"
    ) -> Workspace:
        branch = branch_for(slug, job_id)
        path = root / job_id / "worktree"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():  # a retried job: start again from the base
            await git("worktree", "remove", "--force", str(path), cwd=repository, check=False)
            shutil.rmtree(path, ignore_errors=True)
        await git("worktree", "prune", cwd=repository)
        await git("branch", "-D", branch, cwd=repository, check=False)
        await git("worktree", "add", "-q", "-b", branch, str(path), base, cwd=repository)
        return cls(repository, path, branch, base)

    @classmethod
    async def attach(
        cls, repository: Path, root: Path, *, job_id: str, branch: str, base: str = "main"
    ) -> Workspace:
        """A worktree on an existing branch (a pull request's), to add commits to it."""
        path = root / job_id / "worktree"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            await git("worktree", "remove", "--force", str(path), cwd=repository, check=False)
            shutil.rmtree(path, ignore_errors=True)
        await git("worktree", "prune", cwd=repository)
        await git("worktree", "add", "-q", str(path), branch, cwd=repository)
        return cls(repository, path, branch, base)

    async def changed_files(self) -> list[str]:
        """Every path the change touches: modified, added, deleted, renamed, untracked."""
        await git("add", "-A", "--", ".", cwd=self.path)
        out = await git(
            "diff", "--cached", "--name-only", "--no-renames", "-z", self.base, cwd=self.path
        )
        return sorted(p for p in out.split("\0") if p)

    async def diff_summary(self) -> str:
        """ "3 files changed, 40 insertions(+)": the change at a glance (for job traces)."""
        await git("add", "-A", "--", ".", cwd=self.path)
        return (await git("diff", "--cached", "--shortstat", self.base, cwd=self.path)).strip()

    async def has_changes(self) -> bool:
        await git("add", "-A", "--", ".", cwd=self.path)
        return bool((await git("diff", "--cached", "--name-only", cwd=self.path)).strip())

    async def commit(self, message: str) -> str:
        await git("add", "-A", "--", ".", cwd=self.path)
        name, email = AUTHOR
        await git(
            "-c", f"user.name={name}", "-c", f"user.email={email}",
            "commit", "-q", "--no-verify", "-m", message, cwd=self.path,
        )  # fmt: skip
        return (await git("rev-parse", "HEAD", cwd=self.path)).strip()

    async def remove(self, *, keep_branch: bool) -> None:
        await git("worktree", "remove", "--force", str(self.path), cwd=self.repository, check=False)
        shutil.rmtree(self.path, ignore_errors=True)
        await git("worktree", "prune", cwd=self.repository, check=False)
        if not keep_branch:
            await git("branch", "-D", self.branch, cwd=self.repository, check=False)
