"""What the Mechanic needs from a forge (GitHub, or the local forge), as a protocol."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    branch: str
    head_sha: str


@dataclass(frozen=True)
class PullState:
    """A pull request as a deploy sees it."""

    number: int
    url: str
    state: str  # "open" | "closed" | "merged"
    branch: str
    base: str
    head_sha: str
    merge_sha: str | None = None


class MergeRefused(RuntimeError):
    """The forge would not merge (not mergeable, the head moved, already closed)."""


class Forge(Protocol):
    async def repository(self) -> Path:
        """A local git repository of the home repository, to make worktrees from."""
        ...

    async def publish(
        self, *, job_id: str, branch: str, head_sha: str, base: str, title: str, body: str
    ) -> PullRequest:
        """Push `branch` and open its pull request (once per job: a retry returns the same)."""
        ...

    async def withdraw(self, *, job_id: str, branch: str) -> None:
        """Close the job's pull request, if any, and delete its branch."""
        ...

    async def pull_request(self, number: int) -> PullRequest:
        """An open pull request, its head branch brought into `repository()`."""
        ...

    async def update(self, pull: PullRequest) -> None:
        """Push new commits on the pull request's branch (never rewriting it)."""
        ...
