"""The registry: manifests first, each agent in a host process of its own, quarantine,
atomic reload."""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path

import pytest

from app.agents.base import AgentContext, Message, PermissionDenied, as_reply
from app.agents.builtin import builtin_agents
from app.agents.hosted import HostedAgent
from app.agents.registry import AgentSet, Registry
from tests.support.agents import ECHO, write_agent
from tests.support.hosts import launcher


def context(name: str, permissions: frozenset[str]) -> AgentContext:
    return AgentContext(name, permissions, logging.getLogger(name), {"registry": None})


async def load(root: Path, before: Path | None = None) -> tuple[Registry, AgentSet]:
    """Load `root`; with `before`, first load that folder's agents and then reload."""
    registry = Registry(before or root, builtin_agents(), context, launcher(), commit="abc123")
    if before is not None:
        await registry.reload()
        registry.root = root
    return registry, await registry.reload()


async def ask(agents: AgentSet, command: str, text: str) -> str:
    loaded = agents.by_command(command)
    assert loaded is not None, f"/{command} is not loaded"
    message = Message(text=text, user="cli:t", user_name="t", conversation="cli:t")
    return as_reply(await loaded.agent.handle(message, loaded.context)).text


BROKEN = {
    "syntax": ("def handle(:\n", "syntax error in agent.py line 1"),
    "failing_import": ("import no_such_module_anywhere\n", "ModuleNotFoundError"),
    "raises": ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
    "no_class": ("x = 1\n", "must define one Agent subclass, found 0"),
    "bad_activate": (
        ECHO + "\n    async def activate(self, ctx):\n        raise ValueError('no config')\n",
        "ValueError: no config",
    ),
    "liar": (ECHO.replace("class Echo(Agent):", "class Echo(Agent):\n    command = 'other'"),
             "the manifest says command 'liar' but Echo says 'other'"),
}  # fmt: skip


def test_good_agents_load_and_broken_ones_are_quarantined_with_the_reason(tmp_path: Path) -> None:
    write_agent(tmp_path / "before", "echo")
    write_agent(tmp_path, "echo")
    for name, (code, _) in BROKEN.items():
        write_agent(tmp_path, name, code)
    write_agent(tmp_path, "clash", command="echo")
    write_agent(tmp_path, "takes_help", command="help")
    (tmp_path / "before").rename(tmp_path / ".before")  # not an agent folder itself
    write_agent(tmp_path, "bad_manifest", manifest='name = "bad_manifest"\ncommand = 3\n')
    write_agent(tmp_path, "wrong_folder", manifest=write_manifest("other"))
    write_agent(tmp_path, "greedy", permissions=("root",))

    asyncio.run(_loads_and_quarantines(tmp_path))


async def _loads_and_quarantines(tmp_path: Path) -> None:
    registry, agents = await load(tmp_path, before=tmp_path / ".before")
    assert sorted(a for a, x in agents.agents.items() if not x.builtin) == ["echo"]
    reasons = {name: q.reason for name, q in agents.quarantined.items()}
    for name, (_, reason) in BROKEN.items():
        assert reason in reasons[name], (name, reasons[name])
    assert reasons["clash"] == "/echo is already the command of echo"
    assert reasons["takes_help"] == "/help is a built-in command"
    assert reasons["bad_manifest"].startswith("agent.toml: ")
    assert "folder is 'wrong_folder'" in reasons["wrong_folder"]
    assert "unknown permission 'root'" in reasons["greedy"]
    assert "Traceback" in agents.quarantined["raises"].traceback
    assert await ask(agents, "echo", "Hello") == "Echo: Hello"
    assert agents.fingerprint.startswith("abc123-")
    echo = agents.agents["echo"].agent
    assert isinstance(echo, HostedAgent)  # never imported here: it answers from its host
    assert not [m for m in sys_modules() if "echo" in m or "raises" in m]
    await registry.close()
    assert echo.host is None  # its host stopped with the set


def sys_modules() -> list[str]:
    import sys

    return [m for m in sys.modules if m.startswith("persais_")]


def write_manifest(name: str) -> str:
    return f'name = "{name}"\ncommand = "{name}"\ndescription = "x"\nversion = "1.0.0"\n'


def test_the_manifest_is_checked_before_any_import(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    write_agent(
        tmp_path, "sneaky", f"open({str(marker)!r}, 'w').write('ran')\n" + ECHO, permissions=("x",)
    )

    async def run() -> AgentSet:
        registry, agents = await load(tmp_path)
        await registry.close()
        return agents

    assert "sneaky" in asyncio.run(run()).quarantined
    assert not marker.exists()


def test_reload_swaps_atomically_and_in_flight_messages_finish_on_their_version(
    tmp_path: Path,
) -> None:
    slow = ECHO.replace(
        'return f"Echo: {message.text}"',
        'await asyncio.sleep(0.3)\n        return f"v1: {message.text}"',
    ).replace("from app.agents.base", "import asyncio\nfrom app.agents.base")
    write_agent(tmp_path, "echo", slow)

    async def run() -> None:
        registry = Registry(tmp_path, builtin_agents(), context, launcher())
        first = await registry.reload()
        async with registry.use() as agents:
            in_flight = asyncio.create_task(ask(agents, "echo", "a"))
            await asyncio.sleep(0.05)
            write_agent(tmp_path, "echo", ECHO.replace("Echo:", "v2:"), version="0.2.0")
            second = await registry.reload()
            assert registry.current is second
            assert await ask(registry.current, "echo", "b") == "v2: b"
            assert await in_flight == "v1: a"  # finished on the version it started with
        await asyncio.sleep(0.5)  # the old set retires once idle: its host stops
        assert _host(first) is None
        third = await registry.reload()  # the same files again: the same host goes on
        await asyncio.sleep(0.5)
        assert third.agents["echo"].agent is second.agents["echo"].agent
        assert _host(third) is not None  # the old set's retirement left it alone
        assert await ask(third, "echo", "c") == "v2: c"
        assert second.agents["echo"].manifest.version == "0.2.0"
        assert first.fingerprint != second.fingerprint
        await registry.close()

    asyncio.run(run())


def test_a_context_refuses_what_the_manifest_does_not_grant() -> None:
    ctx = context("echo", frozenset())
    with pytest.raises(PermissionDenied, match="no 'registry' permission"):
        ctx.capability("registry")
    with pytest.raises(PermissionDenied, match="not available"):
        context("echo", frozenset({"state"})).capability("state")


def _host(agents: AgentSet) -> object:
    agent = agents.agents["echo"].agent
    assert isinstance(agent, HostedAgent)
    return agent.host


def _hosts_of(folder: Path) -> list[int]:
    """Live processes whose command line names `folder` (bwrap and the host it starts)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile
            continue
        if str(folder).encode() in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


@pytest.mark.parametrize("moment", ["importing", "activating"])
def test_a_start_cancelled_by_a_stop_leaves_no_host_running(tmp_path: Path, moment: str) -> None:
    """A stop while the agent set starts (the worker's warm-up cancelled by SIGTERM) used to
    leave the hosts it had started running: nothing held them any more."""
    slow_import = "import time\ntime.sleep(30)\n" + ECHO
    slow_activate = ECHO + "\n    async def activate(self, ctx):\n        await asyncio.sleep(30)\n"
    code = slow_import if moment == "importing" else "import asyncio\n" + slow_activate
    write_agent(tmp_path, "slow", code)
    write_agent(tmp_path, "quick")

    async def run() -> list[int]:
        registry = Registry(tmp_path, builtin_agents(), context, launcher(), commit="abc")
        start = asyncio.create_task(registry.reload())
        for _ in range(200):  # until both hosts run (the slow one is then importing)
            await asyncio.sleep(0.05)
            if len(_hosts_of(tmp_path)) >= 2:
                break
        await asyncio.sleep(0.5)
        assert _hosts_of(tmp_path), "no host started: the test proves nothing"
        start.cancel()
        with pytest.raises(asyncio.CancelledError):
            await start
        await registry.close()
        await asyncio.sleep(0.2)  # the kernel reaps what was killed
        return _hosts_of(tmp_path)

    assert asyncio.run(run()) == []
    gc.collect()  # a host's pipes left open would warn now (and fail this test, not a later one)
