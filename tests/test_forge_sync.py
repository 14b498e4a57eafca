"""`persais forge status/sync`: the checkout and the local forge's main, fast-forwarded
whichever side is behind, and left alone (said so) when they diverged or git refuses.
Real git, a real database, real processes; /status shows the same drift."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.forge import drift
from app.forge.local import LocalForge
from app.settings import CHECKOUT_ROOT, Settings
from tests.support.conversation import conversations, say
from tests.support.git_repos import home_repository
from tests.support.local_pulls import commit, git, open_pull
from tests.support.pools import open_pool
from tests.support.processes import persais_env

pytestmark = pytest.mark.slow  # each command is a process of its own (about 2 s)


class Sides:
    def __init__(self, tmp_path: Path, database: str) -> None:
        self.tmp = tmp_path
        self.database = database
        self.home = tmp_path / "home"
        self.checkout = home_repository(tmp_path / "checkout")
        self.bare = self.home / "forge" / "persais.git"
        self.env = persais_env(self.home, database)
        self.merged = 0

    def forge_merges(self, name: str, text: str) -> str:
        """A pull request merged on the forge, as a Deploy merges it; the merge commit."""

        async def run() -> str:
            async with open_pool(self.database) as pool:
                forge = LocalForge(pool, self.home, self.checkout)
                self.merged += 1
                number, head = await open_pull(
                    forge, self.tmp / f"w{self.merged}", f"mechanic/{name}",
                    {name: text}, title=f"Add {name}",
                )  # fmt: skip
                return await forge.merge(number, sha=head, title=f"Add {name}")

        return asyncio.run(run())

    def heads(self) -> tuple[str, str]:
        return git(self.checkout, "rev-parse", "HEAD"), git(self.bare, "rev-parse", "main")

    def persais(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app", "forge", *args, "--checkout", str(self.checkout)],
            env=self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip


@pytest.fixture
def sides(tmp_path: Path, database: str) -> Sides:
    return Sides(tmp_path, database)


def test_merged_pull_requests_reach_the_checkout(sides: Sides) -> None:
    merge = sides.forge_merges("echo.txt", "echo\n")
    status = sides.persais("status")
    assert status.stdout == "the forge's main has 1 commit the checkout's main lacks\n"
    synced = sides.persais("sync")
    assert synced.returncode == 0, synced.stderr
    assert synced.stdout.startswith(f"fast-forwarded the checkout's main to {merge[:12]} (1 commit")
    assert sides.heads() == (merge, merge)
    assert (sides.checkout / "echo.txt").read_text() == "echo\n"  # the working tree too
    again = sides.persais("sync")
    assert again.returncode == 0
    assert again.stdout == f"the checkout's main and the forge's main are in step at {merge[:12]}\n"


def test_the_checkouts_commits_reach_the_forge(sides: Sides) -> None:
    sides.forge_merges("echo.txt", "echo\n")
    assert sides.persais("sync").returncode == 0
    mine = commit(sides.checkout, {"notes.md": "by hand\n"}, "notes")
    mine2 = commit(sides.checkout, {"notes.md": "by hand, twice\n"}, "more notes")
    assert sides.persais("status").stdout == (
        "the checkout's main has 2 commits the forge's main lacks\n"
    )
    synced = sides.persais("sync")
    assert synced.returncode == 0, synced.stderr
    assert synced.stdout == (
        f"fast-forwarded the forge's main to {mine2[:12]} (2 commits from the checkout's main)\n"
    )
    assert sides.heads() == (mine2, mine2)
    assert git(sides.bare, "rev-parse", "main^") == mine
    # The next Mechanic job starts from them: a pull request now branches off the checkout's work.
    merge = sides.forge_merges("later.txt", "later\n")
    assert git(sides.bare, "rev-parse", f"{merge}^") == mine2


def test_diverged_sides_are_named_and_left_alone(sides: Sides) -> None:
    sides.forge_merges("echo.txt", "echo\n")
    commit(sides.checkout, {"notes.md": "by hand\n"}, "notes")
    before = sides.heads()
    synced = sides.persais("sync")
    assert synced.returncode == 1
    assert synced.stdout == (
        "diverged: the forge's main has 1 commit the checkout's main lacks; the checkout's "
        "main has 1 commit the forge's main lacks — changed nothing; merge by hand\n"
    )
    assert sides.heads() == before
    assert (
        git(sides.bare, "for-each-ref", "--format=%(refname)", "refs/heads/main")
        == "refs/heads/main"
    )
    assert not (sides.checkout / "echo.txt").exists()


def test_a_working_tree_in_the_way_keeps_its_changes(sides: Sides) -> None:
    sides.forge_merges("dynamic/agents/README.md", "agents, explained\n")
    (sides.checkout / "dynamic/agents/README.md").write_text("my unsaved edit\n")
    before = sides.heads()
    synced = sides.persais("sync")
    assert synced.returncode == 1
    assert (
        "changed nothing: error: Your local changes to the following files would be overwritten"
        in synced.stdout
    )
    assert sides.heads() == before
    assert (sides.checkout / "dynamic/agents/README.md").read_text() == "my unsaved edit\n"


def test_a_detached_checkout_is_not_moved(sides: Sides) -> None:
    sides.forge_merges("echo.txt", "echo\n")
    git(sides.checkout, "checkout", "-q", "--detach")
    before = sides.heads()
    synced = sides.persais("sync")
    assert synced.returncode == 1
    assert synced.stdout == "the checkout is on a detached HEAD — changed nothing\n"
    assert sides.heads() == before


def test_the_status_line_says_what_closes_the_drift(sides: Sides) -> None:
    line = asyncio.run(drift.status_line(sides.checkout, sides.bare))
    assert line == "local, not made yet (the first Mechanic job makes it)"
    sides.forge_merges("echo.txt", "echo\n")
    line = asyncio.run(drift.status_line(sides.checkout, sides.bare))
    assert line == (
        "local, drifted: the forge's main has 1 commit the checkout's main lacks "
        "(run persais forge sync)"
    )
    assert asyncio.run(drift.status_line(sides.tmp, sides.bare)) == (
        "local; no git checkout here to compare it with"
    )


def test_status_shows_the_drift_from_persais_own_checkout(
    settings: Settings, database: str, sql: Any
) -> None:
    """Against the real checkout (read only): the forge is cloned from it and gets a commit."""

    async def run() -> tuple[str, str]:
        async with conversations(settings, database) as convo:
            first = (await say(convo, "/status"))[0].text
            forge = LocalForge(convo.pool, settings.home, CHECKOUT_ROOT)
            number, head = await open_pull(
                forge, settings.home / "w", "mechanic/x-1", {"x.txt": "x\n"}, title="X"
            )
            await forge.merge(number, sha=head, title="X")
            return first, (await say(convo, "/status"))[0].text

    first, second = asyncio.run(run())
    assert "Forge: local, not made yet (the first Mechanic job makes it)" in first
    # Others may commit to the checkout meanwhile: then the sides have diverged, which
    # /status says too.
    assert "Forge: local, drifted: " in second
    assert "the forge's main has 1 commit the checkout's" in second


def test_a_forge_without_main_is_one_line(sides: Sides) -> None:
    git(sides.checkout, "branch", "-q", "-m", "main", "trunk")
    done = sides.persais("status")
    assert done.returncode == 1
    assert done.stderr == f"persais: forge: the forge ({sides.bare}) has no branch main\n"
    assert "Traceback" not in done.stderr
