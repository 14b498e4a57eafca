"""Pull requests on a local forge made the way a Mechanic job makes them: a commit on a
branch of the forge's bare repository, published through `LocalForge`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from app.forge.local import LocalForge

AUTHOR = ["-c", "user.name=t", "-c", "user.email=t@example.com"]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *AUTHOR, *args], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def commit(tree: Path, files: dict[str, str], message: str) -> str:
    """Write `files` in a working tree and commit them; the commit's id."""
    for name, text in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)
    git(tree, "add", "-A")
    git(tree, "commit", "-qm", message)
    return git(tree, "rev-parse", "HEAD")


async def open_pull(
    forge: LocalForge, scratch: Path, branch: str, files: dict[str, str], *, title: str,
    body: str = "", job_id: str | None = None,
) -> tuple[int, str]:  # fmt: skip
    """A branch off the forge's main with `files`, published; its number and head."""
    bare = await forge.repository()
    git(bare, "worktree", "add", "-q", "-b", branch, str(scratch), "main")
    try:
        head = commit(scratch, files, title)
    finally:
        git(bare, "worktree", "remove", "--force", str(scratch))
    pull = await forge.publish(
        job_id=job_id or f"no-job-{branch}", branch=branch, head_sha=head, base="main",
        title=title, body=body,
    )  # fmt: skip
    return pull.number, head
