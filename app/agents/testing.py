"""What generated tests (`tests/dynamic/`) may use: load an agent through the real registry,
talk to it, and stand up a local Modbus server. Run with the repository as the working
directory, as the Mechanic's validation does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from app.agents.base import AgentContext, Message, Reply, as_reply
from app.agents.registry import LoadedAgent, Registry


def _context(name: str, permissions: frozenset[str]) -> AgentContext:
    return AgentContext(name, permissions, logging.getLogger(f"agent.{name}"), {})


async def load_agent(name: str, root: Path | None = None) -> LoadedAgent:
    """Load every agent under `dynamic/agents` and return `name`; fail with its quarantine
    reason if it did not load."""
    registry = Registry(root or Path("dynamic/agents"), [], _context)
    agents = await registry.reload()
    if name in agents.quarantined:
        q = agents.quarantined[name]
        raise AssertionError(f"agent {name} is quarantined: {q.reason}\n{q.traceback}")
    if name not in agents.agents:
        raise AssertionError(f"no agent {name} under {registry.root}")
    return agents.agents[name]


async def ask(loaded: LoadedAgent, text: str) -> Reply:
    message = Message(text=text, user="test:1", user_name="Test", conversation="test:1")
    return as_reply(await loaded.agent.handle(message, loaded.context))


async def choose(loaded: LoadedAgent, question: str, choice: str) -> Reply:
    return as_reply(await loaded.agent.on_choice(question, choice, loaded.context))


@asynccontextmanager
async def modbus_server(holding: list[int], device_id: int = 1) -> AsyncIterator[int]:
    """A pymodbus TCP server on loopback where holding register `i` holds `holding[i]`;
    yields its port."""
    import socket

    from pymodbus.datastore import (
        ModbusDeviceContext,
        ModbusSequentialDataBlock,
        ModbusServerContext,
    )
    from pymodbus.server import ModbusTcpServer

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
