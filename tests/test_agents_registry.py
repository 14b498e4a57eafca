"""The registry: manifests first, isolated imports, quarantine, atomic reload."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest

from app.agents.base import AgentContext, Message, PermissionDenied, as_reply
from app.agents.builtin import builtin_agents
from app.agents.registry import MODULE_PREFIX, AgentSet, Registry
from tests.support.agents import ECHO, write_agent


def context(name: str, permissions: frozenset[str]) -> AgentContext:
    return AgentContext(name, permissions, logging.getLogger(name), {"registry": None})


def load(root: Path, before: Path | None = None) -> AgentSet:
    """Load `root`; with `before`, first load that folder's agents and then reload."""

    async def run() -> AgentSet:
        registry = Registry(before or root, builtin_agents(), context, commit="abc123")
        if before is not None:
            await registry.reload()
            registry.root = root
        return await registry.reload()

    return asyncio.run(run())


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

    agents = load(tmp_path, before=tmp_path / ".before")

    assert sorted(a for a, x in agents.agents.items() if not x.builtin) == ["echo"]
    reasons = {name: q.reason for name, q in agents.quarantined.items()}
    for name, (_, reason) in BROKEN.items():
        assert reason in reasons[name], (name, reasons[name])
    assert reasons["clash"] == "/echo is already the command of echo"
    assert reasons["takes_help"] == "/help is a built-in command"
    assert reasons["bad_manifest"].startswith("agent.toml: ")
    assert "folder is 'wrong_folder'" in reasons["wrong_folder"]
    assert reasons["greedy"] == "unknown permission(s): root"
    assert "Traceback" in agents.quarantined["raises"].traceback
    assert asyncio.run(ask(agents, "echo", "Hello")) == "Echo: Hello"
    assert agents.fingerprint.startswith("abc123-")
    assert not [m for m in sys.modules if m.startswith(f"{MODULE_PREFIX}.raises")]


def write_manifest(name: str) -> str:
    return f'name = "{name}"\ncommand = "{name}"\ndescription = "x"\nversion = "1.0.0"\n'


def test_the_manifest_is_checked_before_any_import(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    write_agent(
        tmp_path, "sneaky", f"open({str(marker)!r}, 'w').write('ran')\n" + ECHO, permissions=("x",)
    )
    agents = load(tmp_path)
    assert "sneaky" in agents.quarantined
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
        registry = Registry(tmp_path, builtin_agents(), context)
        first = await registry.reload()
        async with registry.use() as agents:
            in_flight = asyncio.create_task(ask(agents, "echo", "a"))
            await asyncio.sleep(0.05)
            write_agent(tmp_path, "echo", ECHO.replace("Echo:", "v2:"), version="0.2.0")
            second = await registry.reload()
            assert registry.current is second
            assert await ask(registry.current, "echo", "b") == "v2: b"
            assert await in_flight == "v1: a"  # finished on the version it started with
        await asyncio.sleep(0.05)  # the old set retires once idle
        old_modules = [m for m in first.modules if m in sys.modules]
        assert old_modules == []
        third = await registry.reload()  # the same files again
        await asyncio.sleep(0.05)
        assert third.modules
        assert all(m in sys.modules for m in third.modules)  # the old set's retirement
        assert not any(m in sys.modules for m in second.modules)  # left the new set alone
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
