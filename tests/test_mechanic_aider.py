"""The real aider-chat, run by our runner against a local scripted OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from app.settings import load_settings
from mechanic.aider import AiderModel, run_aider
from tests.support.hosts import need_bwrap
from tests.support.scripted_llm import scripted_llm

pytestmark = pytest.mark.slow
AIDER = load_settings(None).resolved_aider_bin()
KEY = "sk-scripted-secret-0123456789"
real_which = shutil.which


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "dynamic" / "agents" / "echo").mkdir(parents=True)
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    (repo / "dynamic" / "agents" / "echo" / "agent.py").write_text("VALUE = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    return repo


def whole(path: str, content: str) -> str:
    return f"{path}\n```python\n{content}```\n"


def run(repo: Path, base: str, **kwargs: object) -> object:
    assert AIDER is not None, "Aider is not installed (python3 bootstrap.py setup)"
    model = AiderModel("openai/scripted", base, KEY)
    return asyncio.run(
        run_aider(
            AIDER, model, repo, repo.parent / "job", "Set VALUE to 2.",
            ["dynamic/agents/echo/agent.py"], **kwargs,  # type: ignore[arg-type]
        )
    )  # fmt: skip


def test_aider_applies_the_models_edit_and_commits_nothing(repo: Path) -> None:
    with scripted_llm([whole("dynamic/agents/echo/agent.py", "VALUE = 2\n")]) as (base, llm):
        result = run(repo, base)
    assert (repo / "dynamic" / "agents" / "echo" / "agent.py").read_text() == "VALUE = 2\n"
    assert git(repo, "status", "--porcelain").strip() == "M dynamic/agents/echo/agent.py"
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "1"
    assert len(llm.requests) == 1
    assert llm.requests[0]["model"] == "scripted"
    assert llm.headers[0]["Authorization"] == f"Bearer {KEY}"
    assert "Set VALUE to 2." in str(llm.requests[0]["messages"])
    assert result.exit_code == 0  # type: ignore[attr-defined]
    assert result.tokens_sent == 1000  # type: ignore[attr-defined]
    assert KEY not in result.transcript  # type: ignore[attr-defined]
    assert not list(repo.glob(".aider*"))  # no history files left in the worktree


def test_a_planted_config_and_env_do_not_redirect_aider(repo: Path) -> None:
    evil = "http://127.0.0.1:9/v1"
    (repo / ".aider.conf.yml").write_text(f"openai-api-base: {evil}\nmodel: openai/evil\n")
    (repo / ".env").write_text(f"OPENAI_API_BASE={evil}\nAIDER_MODEL=openai/evil\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "plant")
    with scripted_llm([whole("dynamic/agents/echo/agent.py", "VALUE = 3\n")]) as (base, llm):
        run(repo, base)
    assert [r["model"] for r in llm.requests] == ["scripted"]
    assert (repo / "dynamic" / "agents" / "echo" / "agent.py").read_text() == "VALUE = 3\n"


def test_a_slow_model_hits_the_time_limit_and_aider_is_killed(repo: Path) -> None:
    with scripted_llm([whole("dynamic/agents/echo/agent.py", "VALUE = 4\n")]) as (base, llm):
        llm.delay = 60
        result = run(repo, base, time_limit=4)
    assert result.timed_out  # type: ignore[attr-defined]
    assert result.exit_code is None  # type: ignore[attr-defined]
    assert result.seconds < 20  # type: ignore[attr-defined]
    assert (repo / "dynamic" / "agents" / "echo" / "agent.py").read_text() == "VALUE = 1\n"
    assert not [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(repo.parent / "job") in " ".join(p.info["cmdline"] or [])
    ]


def test_in_the_sandbox_aider_cannot_write_outside_the_worktree(repo: Path) -> None:
    need_bwrap()
    outside = repo.parent / "outside"
    outside.mkdir()
    os.symlink(outside, repo / "dynamic" / "agents" / "echo" / "link")
    hostile = (
        "../escape.txt\n```\nescaped\n```\n"
        "dynamic/agents/echo/link/evil.py\n```python\nevil = 1\n```\n"
        + whole("dynamic/agents/echo/agent.py", "VALUE = 5\n")
    )
    with scripted_llm([hostile]) as (base, _):
        result = run(repo, base)
    assert result.sandboxed  # type: ignore[attr-defined]
    assert not (repo.parent / "escape.txt").exists()
    assert not (outside / "evil.py").exists()
    assert (repo / "dynamic" / "agents" / "echo" / "agent.py").read_text() == "VALUE = 5\n"


def test_without_bubblewrap_the_run_says_it_was_not_sandboxed(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        shutil, "which", lambda name, *a, **k: None if name == "bwrap" else real_which(name)
    )
    with scripted_llm([whole("dynamic/agents/echo/agent.py", "VALUE = 6\n")]) as (base, _):
        result = run(repo, base)
    assert not result.sandboxed  # type: ignore[attr-defined]
    assert (repo / "dynamic" / "agents" / "echo" / "agent.py").read_text() == "VALUE = 6\n"
