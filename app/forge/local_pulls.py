"""Reading the local forge's pull requests: the list, one with its body, files and checks,
and its diff. GitHub has pages for this; the local forge has these, for `persais pr` (and
the console's pages once it runs). Nothing here writes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from app.forge.local import LocalForge
from mechanic.sandbox import search_path
from mechanic.workspace import GitError, git


@dataclass(frozen=True)
class PullSummary:
    number: int
    state: str  # "open" | "closed" | "merged"
    title: str
    branch: str
    base: str
    updated_at: datetime


@dataclass(frozen=True)
class PullDetail:
    summary: PullSummary
    body: str
    head_sha: str
    merge_sha: str | None
    job_id: str | None
    files: list[tuple[str, str]]  # (git's status letter, path)
    shortstat: str
    checks: list[str]


async def listing(
    forge: LocalForge, *, state: str | None = None, limit: int = 50
) -> list[PullSummary]:
    """The newest first."""
    async with forge.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT number, state, title, branch, base, updated_at FROM pull_requests"
            " WHERE repository = %s AND (%s::text IS NULL OR state = %s)"
            " ORDER BY number DESC LIMIT %s",
            (forge.name, state, state, limit),
        )
        return [PullSummary(*row) for row in await cur.fetchall()]


@dataclass(frozen=True)
class PullRecord:
    """What the database holds of a pull request, and its checks (no git read)."""

    summary: PullSummary
    body: str
    head_sha: str
    merge_sha: str | None
    job_id: str | None
    checks: list[str]
    job_status: str | None  # None: no such job here (a pull request opened by other means)


async def record(forge: LocalForge, number: int) -> PullRecord:
    async with forge.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT p.number, p.state, p.title, p.branch, p.base, p.updated_at, p.body,"
            " p.head_sha, p.merge_sha, p.job_id, j.status, j.rounds"
            " FROM pull_requests p LEFT JOIN jobs j ON j.id = p.job_id"
            " WHERE p.repository = %s AND p.number = %s",
            (forge.name, number),
        )
        row = await cur.fetchone()
    if row is None:
        raise LookupError(f"there is no pull request #{number}")
    body, head_sha, merge_sha, job_id, job_status, rounds = row[6:]
    return PullRecord(
        PullSummary(*row[:6]), body, head_sha, merge_sha, job_id,
        _checks(job_id, job_status, rounds), job_status,
    )  # fmt: skip


async def detail(forge: LocalForge, number: int) -> PullDetail:
    pull = await record(forge, number)
    old, new = await _range(forge, pull.summary, pull.head_sha, pull.merge_sha)
    repo = forge.bare
    status = await git("diff", "--name-status", "--no-renames", old, new, cwd=repo)
    files = [
        (parts[0], parts[1]) for parts in (line.split("\t", 1) for line in status.splitlines())
    ]
    stat = (await git("diff", "--shortstat", old, new, cwd=repo)).strip()
    return PullDetail(
        pull.summary, pull.body, pull.head_sha, pull.merge_sha, pull.job_id, files, stat,
        pull.checks,
    )  # fmt: skip


async def patch(forge: LocalForge, pull: PullRecord, *, limit: int) -> tuple[str, bool]:
    """The change as git's unified diff with renames found, read up to `limit` bytes: the
    text (whole lines) and whether it was cut there. For a page, which must stay fast
    however large the change."""
    old, new = await _range(forge, pull.summary, pull.head_sha, pull.merge_sha)
    args = ("-c", "core.quotepath=false", "diff", "--no-color", "--no-ext-diff",
            "--no-textconv", "--find-renames", old, new)  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        "git", *args, cwd=forge.bare,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env={"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(forge.bare), "PATH": search_path()},
    )  # fmt: skip
    assert proc.stdout is not None
    read = bytearray()
    while len(read) <= limit and (chunk := await proc.stdout.read(1 << 16)):
        read += chunk
    cut = len(read) > limit
    if cut:  # git need not write the rest
        proc.kill()
        read = read[: read.rfind(b"\n", 0, limit) + 1]
    if await proc.wait() != 0 and not cut:
        raise GitError(f"git diff of #{pull.summary.number} failed")
    return read.decode(errors="replace"), cut


async def diff(forge: LocalForge, number: int, *, color: bool) -> str:
    """The change as a patch; with `color`, git's ANSI colours."""
    pull = await record(forge, number)
    old, new = await _range(forge, pull.summary, pull.head_sha, pull.merge_sha)
    colour = "--color=always" if color else "--color=never"
    return await git("diff", colour, "--no-renames", old, new, cwd=forge.bare)


def _checks(job_id: str | None, status: str | None, rounds: int | None) -> list[str]:
    """The local forge runs no CI: the check is the Mechanic's validation, which a job
    passes before it opens its pull request."""
    if job_id is None or status is None:
        return ["no checks: the local forge runs no CI, and no Mechanic job opened this"]
    repairs = f"{rounds} repair round{'' if rounds == 1 else 's'}"
    return [f"Mechanic validation: passed (job {job_id}, {repairs}; the job is {status})"]


async def _range(
    forge: LocalForge, pull: PullSummary, head_sha: str, merge_sha: str | None
) -> tuple[str, str]:
    """The two commits whose difference is the pull request: a merged one is its squash
    commit against its parent; an open or closed one is its head against where it left the
    base (the branch may have been deleted: the recorded head then)."""
    repo = await forge.repository()
    if pull.state == "merged" and merge_sha:
        return f"{merge_sha}^", merge_sha
    head = head_sha
    if pull.state == "open":
        tip = await git("rev-parse", "-q", "--verify", f"refs/heads/{pull.branch}", cwd=repo,
                        check=False)  # fmt: skip
        head = tip.strip() or head_sha
    if not (await git("cat-file", "-t", head, cwd=repo, check=False)).strip():
        raise LookupError(f"the commits of #{pull.number} are no longer in the forge")
    fork = await git("merge-base", f"refs/heads/{pull.base}", head, cwd=repo, check=False)
    return (fork.strip() or f"{head}^"), head
