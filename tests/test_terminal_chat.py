"""`persais chat`: the same orchestrator over stdin/stdout, buttons as numbered choices."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.settings import Settings
from tests.support.agents import write_agent
from tests.support.conversation import ASKER
from tests.support.processes import persais_env
from tests.support.server import running_server

pytestmark = pytest.mark.slow


def chat(env: dict[str, str], lines: list[str], name: str = "ada") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app", "chat", "--name", name],
        input="\n".join(lines) + "\n", env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_terminal_drives_modes_and_approvals_across_restarts(
    tmp_path: Path, database: str, settings: Settings, sql
) -> None:
    agents = tmp_path / "agents"
    write_agent(agents, "echo")
    write_agent(agents, "asker", ASKER)
    write_agent(agents, "broken", "import definitely_not_installed\n")
    env = persais_env(tmp_path / "home", database, PERSAIS_AGENTS_DIR=str(agents))

    first = chat(env, ["/echo", "hello", "/asker v3", "/agents"])
    assert "Echo: hello" in first
    assert "Ship v3?\n  [1] Ship it  [2] Not now" in first
    assert "broken: ModuleNotFoundError" in first

    second = chat(env, ["still in echo mode", "1"])  # a new process: mode and question kept
    assert "Echo: still in echo mode" in second
    assert "Ship v3?\n  [1] Ship it  [2] Not now" in second  # offered again
    assert "Ship it — noted." in second
    assert "ship:v3 -> shipped" in second

    # The conversation shows in /status of the running server's database.
    with running_server(settings, database) as (url, _):
        status = chat(env, ["/status"], name="bob")
        ready = httpx.get(f"{url}/ready").json()
    assert "cli:ada (" in status
    assert sql("SELECT status FROM approvals") == [("decided",)]
    assert {a["name"] for a in ready["agents"]["loaded"] or []} >= {"help", "status"}
