"""Workspace and validation on real git worktrees."""

from __future__ import annotations

import asyncio
import random
import string
import subprocess
from pathlib import Path

import pytest

from mechanic.scaffold import Example, ScaffoldRequest, render, write
from mechanic.validate import validate
from mechanic.workspace import Workspace
from tests.support.git_repos import home_repository

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
pytestmark = pytest.mark.slow


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    return home_repository(tmp_path / "home-repo")


def scaffold(ws: Workspace, examples: tuple[Example, ...] = ()) -> None:
    write(
        ws.path,
        render(TEMPLATES, ScaffoldRequest("agent", "echo", "echo", "Echo", examples=examples)),
    )


def test_a_workspace_is_a_fresh_branch_and_goes_away(repository: Path, tmp_path: Path) -> None:
    async def run() -> None:
        ws = await Workspace.create(repository, tmp_path / "jobs", job_id="j1", slug="Create Echo!")
        assert ws.branch == "mechanic/create-echo-j1"
        scaffold(ws)
        (ws.path / "dynamic" / "agents" / "README.md").unlink()
        assert await ws.changed_files() == [
            "dynamic/agents/README.md", "dynamic/agents/echo/agent.py",
            "dynamic/agents/echo/agent.toml", "tests/dynamic/test_echo.py",
        ]  # fmt: skip
        sha = await ws.commit("Add echo")
        assert len(sha) == 40
        await ws.remove(keep_branch=True)
        assert not ws.path.exists()

    asyncio.run(run())
    branches = subprocess.run(
        ["git", "-C", str(repository), "branch", "--list", "mechanic/*"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "mechanic/create-echo-j1" in branches


def test_a_clean_scaffold_passes_every_step(repository: Path, tmp_path: Path) -> None:
    async def run() -> None:
        ws = await Workspace.create(repository, tmp_path / "jobs", job_id="j2", slug="echo")
        scaffold(ws)
        report = await validate(ws.path, await ws.changed_files(), "echo")
        assert report.ok, report.problems
        assert report.steps == {"policy": "ok", "ruff": "ok", "tests": "ok", "load": "ok"}

    asyncio.run(run())


def test_failures_are_reported_for_repair(repository: Path, tmp_path: Path) -> None:
    async def run() -> None:
        ws = await Workspace.create(repository, tmp_path / "jobs", job_id="j3", slug="echo")
        scaffold(ws, (Example("Hello", "Echo: Hello"),))
        agent_py = ws.path / "dynamic" / "agents" / "echo" / "agent.py"
        agent_py.write_text(agent_py.read_text() + "\nraise RuntimeError('half done')\n")
        report = await validate(ws.path, await ws.changed_files(), "echo")
        assert not report.ok
        assert not report.policy_refused
        assert report.steps["tests"] == "failed"
        assert report.steps["load"] == "failed"
        assert any("RuntimeError: half done" in p for p in report.problems)

    asyncio.run(run())


def test_a_policy_violation_stops_everything_before_anything_runs(
    repository: Path, tmp_path: Path
) -> None:
    async def run() -> None:
        ws = await Workspace.create(repository, tmp_path / "jobs", job_id="j4", slug="echo")
        scaffold(ws)
        marker = tmp_path / "ran"
        agent_py = ws.path / "dynamic" / "agents" / "echo" / "agent.py"
        agent_py.write_text(
            f"import subprocess\nopen({str(marker)!r}, 'w')\n" + agent_py.read_text()
        )
        (ws.path / "app").mkdir()
        (ws.path / "app" / "server.py").write_text("x = 1\n")
        report = await validate(ws.path, await ws.changed_files(), "echo")
        assert report.policy_refused
        assert report.steps == {"policy": "failed"}
        assert report.problems == [
            "app/server.py: only dynamic/ and tests/dynamic/ may change [path.outside]"
        ]  # a change out of its lane is not even read
        assert not marker.exists()
        (ws.path / "app" / "server.py").unlink()
        report = await validate(ws.path, await ws.changed_files(), "echo")
        assert report.steps == {"policy": "failed"}
        assert any("'subprocess'" in p for p in report.problems)
        assert not marker.exists()

    asyncio.run(run())


def test_a_secret_written_into_any_file_is_refused_by_kind_not_value(
    repository: Path, tmp_path: Path
) -> None:
    token = "xoxb-" + "".join(random.choices(string.ascii_letters + string.digits, k=24))

    async def run() -> list[str]:
        ws = await Workspace.create(repository, tmp_path / "jobs", job_id="j5", slug="echo")
        scaffold(ws)
        agent_py = ws.path / "dynamic" / "agents" / "echo" / "agent.py"
        agent_py.write_text(agent_py.read_text() + f"\nSLACK = {token!r}\n")
        manifest = ws.path / "dynamic" / "agents" / "echo" / "agent.toml"
        manifest.write_text(manifest.read_text() + f'# webhook: "{token}"\n')
        report = await validate(ws.path, await ws.changed_files(), "echo")
        assert report.policy_refused
        return report.problems

    problems = asyncio.run(run())
    secrets = [p for p in problems if "Slack token" in p]
    assert len(secrets) == 2  # the code and the manifest
    assert any("agent.toml" in p for p in secrets)
    assert token not in "\n".join(problems)  # the problems go into the fix prompt
