"""Where bubblewrap is missing (a macOS laptop), a host is still a process of its own with an
environment built from nothing, and everything says "unsandboxed"; with
PERSAIS_REQUIRE_SANDBOX nothing runs at all. No silent fallback."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from app.agents.base import AgentContext, Message, as_reply
from app.agents.jail import Jail, find_bwrap
from app.agents.registry import AgentSet, Registry
from app.deploy.granting import sandbox_warning
from app.doctor import BROKEN, MISSING, OK, check_sandbox
from app.settings import Settings
from tests.support.agents import write_agent
from tests.support.hosts import launcher, need_bwrap

PEEK = """
import os
from app.agents.base import Agent


class Peek(Agent):
    async def handle(self, message, ctx):
        try:
            import socket
            socket.socket()
            net = "socket made"
        except OSError as exc:
            net = f"no socket ({exc.errno})"
        return f"{os.environ.get('LLM_API_KEY', 'no key')}; {net}"
"""


def context(name: str, permissions: frozenset[str]) -> AgentContext:
    return AgentContext(name, permissions, logging.getLogger(name), {})


def load_and_ask(root: Path, *, require: bool) -> tuple[AgentSet, str]:
    async def run() -> tuple[AgentSet, str]:
        registry = Registry(root, [], context, launcher(require_sandbox=require))
        agents = await registry.reload()
        said = ""
        if "peek" in agents.agents:
            loaded = agents.agents["peek"]
            message = Message(text="", user="t", user_name="t", conversation="t")
            said = as_reply(await loaded.agent.handle(message, loaded.context)).text
        await registry.close()
        return agents, said

    return asyncio.run(run())


@pytest.fixture
def no_bwrap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("LLM_API_KEY", "sentinel-llm-key-4242")
    assert find_bwrap() is None


def test_without_bwrap_an_agent_runs_unsandboxed_in_its_own_process_and_says_so(
    tmp_path: Path, no_bwrap: None
) -> None:
    write_agent(tmp_path / "agents", "peek", PEEK)
    agents, said = load_and_ask(tmp_path / "agents", require=False)
    assert agents.sandboxed is False
    assert "sentinel" not in said  # the environment is built from nothing, sandbox or not
    assert said == "no key; no socket (1)"  # the seccomp filter holds without bwrap too
    assert Jail(None).describe().startswith("⚠ unsandboxed")
    assert sandbox_warning(Settings()) == [
        "⚠ unsandboxed here (no bubblewrap): the agent would run with limits only"
    ]
    check = check_sandbox(Settings())
    assert (check.status, check.detail.split(":")[0]) == (MISSING, "unsandboxed")


def test_require_sandbox_refuses_to_run_agents_without_bwrap(
    tmp_path: Path, no_bwrap: None
) -> None:
    write_agent(tmp_path / "agents", "peek", PEEK)
    agents, _ = load_and_ask(tmp_path / "agents", require=True)
    assert "peek" not in agents.agents
    assert agents.quarantined["peek"].reason.startswith("refused: bubblewrap is missing")
    strict = Settings(PERSAIS_REQUIRE_SANDBOX=True)
    assert check_sandbox(strict).status == BROKEN
    assert "refuses" in sandbox_warning(strict)[0]


def test_with_bwrap_the_doctor_starts_a_real_host_and_the_set_is_sandboxed(
    tmp_path: Path,
) -> None:
    need_bwrap()
    write_agent(tmp_path / "agents", "peek", PEEK)
    agents, said = load_and_ask(tmp_path / "agents", require=True)
    assert agents.sandboxed is True
    assert said == "no key; no socket (1)"
    check = check_sandbox(Settings())
    assert check.status == OK
    assert "an agent host answered under bubblewrap" in check.detail
    assert sandbox_warning(Settings()) == []
