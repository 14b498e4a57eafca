"""The checkout and the local forge drift apart: merged pull requests land on the forge's
`main`, not in the checkout Persais runs from, and commits made in the checkout never reach
the forge. This measures the drift and closes it only where git can fast-forward; anything
else is said and left alone, since only a person can decide how two histories join."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mechanic.workspace import GitError, git


@dataclass(frozen=True)
class Drift:
    branch: str | None  # the checkout's branch; None on a detached HEAD
    checkout: str  # its commit
    forge: str  # the forge's base branch's commit
    base: str  # that branch's name ("main")
    behind: int  # commits merged on the forge that the checkout lacks
    ahead: int  # commits in the checkout that the forge lacks

    @property
    def state(self) -> str:
        if self.behind and self.ahead:
            return "diverged"
        if self.behind:
            return "checkout behind"
        if self.ahead:
            return "forge behind"
        return "in step"

    def describe(self) -> str:
        where = f"the checkout's {self.branch}" if self.branch else "the checkout (detached)"
        forge = f"the forge's {self.base}"
        if self.state == "in step":
            return f"{where} and {forge} are in step at {self.checkout[:12]}"
        parts = []
        if self.behind:
            parts.append(f"{forge} has {_commits(self.behind)} {where} lacks")
        if self.ahead:
            parts.append(f"{where} has {_commits(self.ahead)} {forge} lacks")
        return ("diverged: " if self.state == "diverged" else "") + "; ".join(parts)


def _commits(n: int) -> str:
    return f"{n} commit{'' if n == 1 else 's'}"


async def measure(checkout: Path, bare: Path, base: str = "main") -> Drift:
    """Compare the checkout's HEAD with the forge's `base`. The checkout's commits are
    fetched into the forge's object store (no ref is written there, none in the checkout)."""
    if not (checkout / ".git").exists():
        raise LookupError(f"{checkout} is not a git checkout")
    head = (await git("rev-parse", "HEAD", cwd=checkout)).strip()
    ref = (await git("symbolic-ref", "-q", "HEAD", cwd=checkout, check=False)).strip()
    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
    forge = (await git("rev-parse", "-q", "--verify", f"refs/heads/{base}", cwd=bare,
                       check=False)).strip()  # fmt: skip
    if not forge:
        raise LookupError(f"the forge ({bare}) has no branch {base}")
    if head != forge:
        await git("fetch", "-q", "--no-write-fetch-head", "--no-tags", str(checkout), ref or head,
                  cwd=bare)  # fmt: skip
    counts = await git("rev-list", "--left-right", "--count", f"{forge}...{head}", cwd=bare)
    behind, ahead = (int(n) for n in counts.split())
    return Drift(branch, head, forge, base, behind, ahead)


@dataclass(frozen=True)
class Synced:
    before: Drift
    done: str  # what changed, or why nothing did
    changed: bool


async def sync(checkout: Path, bare: Path, base: str = "main") -> Synced:
    """Fast-forward whichever side is behind; refuse (changing nothing) when they diverged,
    when the checkout is detached, or when its working tree stands in the way."""
    drift = await measure(checkout, bare, base)
    if drift.state == "in step":
        return Synced(drift, drift.describe(), False)
    if drift.state == "diverged":
        return Synced(drift, f"{drift.describe()} — changed nothing; merge by hand", False)
    if drift.branch is None:
        return Synced(drift, "the checkout is on a detached HEAD — changed nothing", False)
    if drift.state == "checkout behind":
        try:  # the forge's commits into the checkout, then a fast-forward of its branch
            await git("fetch", "-q", "--no-write-fetch-head", "--no-tags", str(bare),
                      f"refs/heads/{base}", cwd=checkout)  # fmt: skip
            await git("merge", "-q", "--ff-only", drift.forge, cwd=checkout)
        except GitError as exc:
            why = str(exc).splitlines()[0].split(" failed: ", 1)[-1]
            return Synced(drift, f"{drift.describe()} — changed nothing: {why}", False)
        return Synced(
            drift,
            f"fast-forwarded the checkout's {drift.branch} to {drift.forge[:12]} "
            f"({_commits(drift.behind)} from the forge's {base})",
            True,
        )
    # The forge is behind: compare-and-swap, so a merge landing meanwhile is not lost.
    try:
        await git("update-ref", f"refs/heads/{base}", drift.checkout, drift.forge, cwd=bare)
    except GitError:
        return Synced(drift, f"the forge's {base} moved meanwhile — changed nothing", False)
    return Synced(
        drift,
        f"fast-forwarded the forge's {base} to {drift.checkout[:12]} "
        f"({_commits(drift.ahead)} from the checkout's {drift.branch})",
        True,
    )


async def status_line(checkout: Path, bare: Path) -> str:
    """One line for /status: the drift, and what closes it."""
    if not (bare / "HEAD").exists():
        return "local, not made yet (the first Mechanic job makes it)"
    if not (checkout / ".git").exists():
        return "local; no git checkout here to compare it with"
    try:
        drift = await measure(checkout, bare)
    except (GitError, LookupError) as exc:
        return f"local; drift unknown: {str(exc).splitlines()[0][:200]}"
    if drift.state == "in step":
        return f"local, {drift.describe()}"
    advice = "merge by hand" if drift.state == "diverged" else "run persais forge sync"
    return f"local, drifted: {drift.describe()} ({advice})"
