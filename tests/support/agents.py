"""Write hand-made agents into a `dynamic/agents` folder, as the Mechanic (or a person) would."""

from __future__ import annotations

import textwrap
from pathlib import Path

ECHO = """
from app.agents.base import Agent, AgentContext, Message, Reply


class Echo(Agent):
    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        return f"Echo: {message.text}"
"""


def write_agent(
    root: Path,
    name: str,
    code: str = ECHO,
    *,
    command: str | None = None,
    version: str = "0.1.0",
    permissions: tuple[str, ...] = (),
    manifest: str | None = None,
) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    if manifest is None:
        perms = ", ".join(f'"{p}"' for p in permissions)
        manifest = (
            f'name = "{name}"\ncommand = "{command or name}"\n'
            f'description = "the {name} agent"\nversion = "{version}"\npermissions = [{perms}]\n'
        )
    (folder / "agent.toml").write_text(manifest)
    (folder / "agent.py").write_text(textwrap.dedent(code))
    return folder
