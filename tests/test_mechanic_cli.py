"""`persais mechanic`: one job from the terminal, recorded in the jobs table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mechanic import PLAN, REQUEST, echo_reply
from tests.support.processes import persais_env
from tests.support.scripted_llm import scripted_llm

pytestmark = pytest.mark.slow


def mechanic(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "mechanic", *args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_a_request_ends_in_a_pull_request_and_a_job_record(
    tmp_path: Path, database: str, sql
) -> None:
    replies = [json.dumps(PLAN), echo_reply('f"Echo: {message.text}"')]
    with scripted_llm(replies) as (base, _):
        env = persais_env(
            tmp_path / "home",
            database,
            LLM_API_BASE=base,
            LLM_API_KEY="sk-cli",
            LLM_MODEL="scripted",
        )
        done = mechanic(env, REQUEST)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "… plan" in done.stdout
    assert "Pull request #1 is open: persais pr show 1" in done.stdout
    ((job, status, branch, pr),) = sql("SELECT id, status, branch, pr_number FROM jobs")
    assert status == "opened"
    assert branch.startswith("mechanic/echo-")
    assert pr == 1
    # Its model calls count like a chat job's (the planner's here; Aider reports its own).
    kinds = sql("SELECT DISTINCT kind, subject FROM model_costs")
    assert ("job", job) in kinds


def test_without_a_model_it_says_so_and_the_template_alone_works(
    tmp_path: Path, database: str, sql
) -> None:
    env = persais_env(tmp_path / "home", database)
    refused = mechanic(env, REQUEST)
    assert refused.returncode == 2
    assert "no model is configured" in refused.stderr
    assert "--template-only" in refused.stderr

    done = mechanic(env, "Say hello", "--template-only", "--name", "greeter")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Pull request #1 is open" in done.stdout
    assert sql("SELECT status FROM jobs") == [("opened",)]


def test_template_only_reads_the_name_from_the_request_as_the_chat_does(
    tmp_path: Path, database: str, sql
) -> None:
    env = persais_env(tmp_path / "home", database)
    done = mechanic(env, "Create an agent Greeter that says hello", "--template-only")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Pull request #1 is open" in done.stdout
    ((branch,),) = sql("SELECT branch FROM jobs")
    assert branch.startswith("mechanic/greeter-")
