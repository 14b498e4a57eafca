"""The GitHub forge against the fake GitHub: the Mechanic's branch pushed over HTTPS with the
installation token (never stored), one pull request per job however often it is published,
and withdrawing closes it and deletes the branch."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from app.forge.github import GitHubForge
from app.github.client import GitHubApp
from app.settings import load_settings
from mechanic.workspace import Workspace
from tests.support.fake_github import APP_ID, app_key_pair, fake_github

PRIVATE, PUBLIC = app_key_pair()
HOME = "octo/persais"


def test_publish_is_idempotent_and_withdraw_cleans_up(tmp_path: Path) -> None:
    with fake_github(PUBLIC) as (url, fake):
        fake.add_repo(HOME, 77, files={"dynamic/agents/README.md": "agents\n"})
        settings = load_settings(
            None, GITHUB_APP_ID=APP_ID, GITHUB_PRIVATE_KEY=PRIVATE, GITHUB_API_URL=url
        )
        forge = GitHubForge(GitHubApp(settings), tmp_path / "home", HOME)

        async def run() -> tuple[int, int, str]:
            mirror = await forge.repository()
            work = await Workspace.create(mirror, tmp_path / "jobs", job_id="j1", slug="echo")
            (work.path / "dynamic" / "agents" / "echo.md").write_text("echo\n")
            head = await work.commit("Add echo")
            kwargs = {"job_id": "j1", "branch": work.branch, "head_sha": head, "base": "main",
                      "title": "Add echo", "body": "Mechanic job `j1`"}  # fmt: skip
            first = await forge.publish(**kwargs)
            again = await forge.publish(**kwargs)  # a retried job
            await work.remove(keep_branch=True)
            await forge.withdraw(job_id="j1", branch=work.branch)
            return first.number, again.number, work.branch

        first, again, branch = asyncio.run(run())
        assert first == again
        assert len(fake.pulls) == 1
        pull = fake.pulls[(HOME, first)]
        assert pull.state == "closed"
        assert fake.repos[HOME].git.branch(branch) is None  # deleted on GitHub
        token_calls = [c for c in fake.calls if "/access_tokens" in c.path]
        assert len(token_calls) == 1
        tokens = list(fake.tokens)
    config = tmp_path / "home" / "forge" / "github" / "octo" / "persais.git" / "config"
    stored = config.read_text()
    assert all(token not in stored for token in tokens)  # the token never lands on disk
    assert "x-access-token" not in stored
    listed = subprocess.run(
        ["git", "-C", str(config.parent), "branch", "--list", "mechanic/*"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert listed == ""


def test_deploy_side_checks_merges_once_and_refuses_a_moved_head(tmp_path: Path) -> None:
    from mechanic.forge import MergeRefused

    with fake_github(PUBLIC) as (url, fake):
        fake.add_repo(HOME, 77, files={"dynamic/agents/README.md": "agents\n"})
        head = fake.push(HOME, "mechanic/echo-j1", {"dynamic/agents/echo/agent.py": "x = 1\n"})
        number = fake.open_pull(HOME, "mechanic/echo-j1", title="Add echo")
        settings = load_settings(
            None, GITHUB_APP_ID=APP_ID, GITHUB_PRIVATE_KEY=PRIVATE, GITHUB_API_URL=url
        )
        app = GitHubApp(settings)
        forge = GitHubForge(app, tmp_path / "home", HOME)

        async def run() -> None:
            client = app.installation(await forge.installation())
            await client.rest.checks.async_create(
                "octo", "persais", name="ci", head_sha=head, status="in_progress"
            )
            assert await forge.checks(head) == ["ci is in_progress"]
            run_id = fake.check_runs[-1]["id"]
            await client.rest.checks.async_update(
                "octo", "persais", run_id, status="completed", conclusion="failure"
            )
            assert await forge.checks(head) == ["ci: failure"]
            await client.rest.checks.async_update(
                "octo", "persais", run_id, status="completed", conclusion="success"
            )
            assert await forge.checks(head) == []
            with pytest.raises(MergeRefused):  # the head is not what was validated
                await forge.merge(number, sha="0" * 40, title="Add echo")
            merged = await forge.merge(number, sha=head, title="Add echo")
            assert await forge.merge(number, sha=head, title="Add echo") == merged  # once
            state = await forge.pull_state(number)
            assert (state.state, state.merge_sha) == ("merged", merged)
            assert await forge.changed_paths(merged) == ["dynamic/agents/echo/agent.py"]

        asyncio.run(run())
        assert len(fake.merges) == 1
