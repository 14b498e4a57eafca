"""What generated tests (`tests/dynamic/`) may use: load an agent, talk to it, and stand up a
local Modbus server. Run with the repository as the working directory, as the Mechanic's
validation does.

A generated test runs the agent's code in its own process: validation runs the whole test
in a sandbox with no network (`mechanic.sandbox`), so the agent is loaded in-process there,
through the real registry and with the real capability broker (`app.agents.capabilities`,
state kept in memory). Messages and replies make the same JSON round trip as through a host,
so a reply a host would refuse fails here too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from app.agents import sdk
from app.agents.base import Agent, AgentContext, Message, Reply
from app.agents.capabilities import Broker
from app.agents.loading import import_agent, instantiate
from app.agents.manifest import Manifest
from app.agents.registry import AgentSet, LoadedAgent, Registry
from app.agents.state import MemoryState


class InProcessAgent(Agent):
    """An agent's own object, loaded in this process, bound to its broker-backed context."""

    def __init__(self, agent: Agent, ctx: AgentContext) -> None:
        self.agent = agent
        self.ctx = ctx

    async def activate(self, ctx: AgentContext) -> None:
        await self.agent.activate(self.ctx)

    async def deactivate(self) -> None:
        await self.agent.deactivate()

    async def handle(self, message: Message, ctx: AgentContext) -> Reply:
        wire = sdk.message_from_json(sdk.message_to_json(message))
        return sdk.reply_from_json(sdk.reply_to_json(await self.agent.handle(wire, self.ctx)))

    async def on_choice(self, question: str, choice: str, ctx: AgentContext) -> Reply:
        answer = await self.agent.on_choice(question, choice, self.ctx)
        return sdk.reply_from_json(sdk.reply_to_json(answer))


def in_process(devices: dict[str, int] | None = None) -> Callable[..., Any]:
    """A registry launcher that imports each agent here. `devices` maps a granted Modbus
    device's name to a port on 127.0.0.1 (a test's own server)."""
    state = MemoryState()
    where = {name: ("127.0.0.1", port) for name, port in (devices or {}).items()}
    generation = 0

    async def launch(manifest: Manifest, folder: Path, _quarantine: object) -> Agent:
        nonlocal generation
        generation += 1
        module = import_agent(folder / "agent.py", f"persais_test_{manifest.name}_{generation}")
        agent = instantiate(module, manifest.name, manifest.command)
        broker = Broker(manifest.name, manifest.permissions, state, devices=where)
        ctx = sdk.context(manifest.name, manifest.permissions.names(), broker.serve)
        return InProcessAgent(agent, ctx)

    return launch


def _context(name: str, permissions: frozenset[str]) -> AgentContext:
    return AgentContext(name, permissions, logging.getLogger(f"agent.{name}"), {})


async def load_all(root: Path, devices: dict[str, int] | None = None) -> AgentSet:
    return await Registry(root, [], _context, in_process(devices)).reload()


async def load_agent(
    name: str, root: Path | None = None, *, devices: dict[str, int] | None = None
) -> LoadedAgent:
    """Load every agent under `dynamic/agents` and return `name`; fail with its quarantine
    reason if it did not load."""
    root = root or Path("dynamic/agents")
    agents = await load_all(root, devices)
    if name in agents.quarantined:
        q = agents.quarantined[name]
        raise AssertionError(f"agent {name} is quarantined: {q.reason}\n{q.traceback}")
    if name not in agents.agents:
        raise AssertionError(f"no agent {name} under {root}")
    return agents.agents[name]


async def smoke(root: Path) -> dict[str, Any]:
    """The load smoke of validation: which agents load, and why the others do not."""
    agents = await load_all(root)
    return {
        "loaded": sorted(agents.agents),
        "quarantined": {n: q.reason for n, q in agents.quarantined.items()},
    }


async def ask(loaded: LoadedAgent, text: str) -> Reply:
    message = Message(text=text, user="test:1", user_name="Test", conversation="test:1")
    return sdk.reply_from_json(
        sdk.reply_to_json(await loaded.agent.handle(message, loaded.context))
    )


async def choose(loaded: LoadedAgent, question: str, choice: str) -> Reply:
    answer = await loaded.agent.on_choice(question, choice, loaded.context)
    return sdk.reply_from_json(sdk.reply_to_json(answer))


@asynccontextmanager
async def modbus_server(
    holding: list[int], device_id: int = 1, port: int = 0
) -> AsyncIterator[int]:
    """A pymodbus TCP server on loopback where holding register `i` holds `holding[i]`;
    yields its port (a free one unless given)."""
    import socket

    from pymodbus.datastore import (
        ModbusDeviceContext,
        ModbusSequentialDataBlock,
        ModbusServerContext,
    )
    from pymodbus.server import ModbusTcpServer

    if not port:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
    # pymodbus 3.16 maps a block starting at 1 to protocol address 0.
    device = ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, holding))
    server = ModbusTcpServer(
        ModbusServerContext(devices={device_id: device}, single=False),
        address=("127.0.0.1", port),
    )
    task = asyncio.create_task(server.serve_forever())
    for _ in range(100):
        if server.is_active():
            break
        await asyncio.sleep(0.02)
    try:
        yield port
    finally:
        await server.shutdown()
        task.cancel()
