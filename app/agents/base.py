"""The agent contract: one class, a message in, a reply out, a lifecycle around it.

Built-in agents (help, status, agents) and the Mechanic's agents in `dynamic/agents/` are
the same kind of thing. An agent sees the world only through its `AgentContext`, which
offers what its manifest's permissions grant and refuses the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Message:
    """What a person said to an agent."""

    text: str  # for a command, the words after it; otherwise the whole text
    user: str  # "tg:123", "cli:ada"
    user_name: str
    conversation: str  # the thread: "tg:<chat>", "cli:<name>", "gh:<owner>/<repo>#<n>"
    command: str | None = None
    admin: bool = False  # the sender is an admin of this surface


@dataclass(frozen=True)
class Choice:
    key: str  # short: it travels in Telegram's 64-byte callback_data
    label: str
    url: str = ""  # a link ("View PR"): shows the address, decides nothing


@dataclass(frozen=True)
class Reply:
    """An agent's answer. With `choices` it is a question; the person's pick comes back to
    the agent's `on_choice` with `question`, even after a restart."""

    text: str
    choices: tuple[Choice, ...] = ()
    question: str = ""


class PermissionDenied(PermissionError):
    pass


@dataclass
class AgentContext:
    """What an agent may use. Each capability is granted by a manifest permission."""

    agent: str
    permissions: frozenset[str]
    log: logging.Logger
    _capabilities: dict[str, Any] = field(default_factory=dict)

    def capability(self, name: str) -> Any:
        if name not in self.permissions:
            raise PermissionDenied(f"agent {self.agent} has no {name!r} permission")
        if name not in self._capabilities:
            raise PermissionDenied(f"{name!r} is not available in this process")
        return self._capabilities[name]


class Agent:
    """Subclass this once in `agent.py`. `name` and `command` come from the manifest; an
    agent that declares them must agree with it."""

    name: ClassVar[str] = ""
    command: ClassVar[str] = ""
    description: ClassVar[str] = ""
    permissions: ClassVar[tuple[str, ...]] = ()  # built-ins only; dynamic agents: agent.toml

    async def activate(self, ctx: AgentContext) -> None:
        """Called once when the agent set goes live. Open what you need here."""

    async def deactivate(self) -> None:
        """Called once when the set is replaced, after the last message it was handling."""

    async def handle(self, message: Message, ctx: AgentContext) -> Reply | str:
        raise NotImplementedError

    async def on_choice(self, question: str, choice: str, ctx: AgentContext) -> Reply | str:
        """A person answered `question` (asked in an earlier `Reply`) with `choice`."""
        return f"Noted: {choice}."


ContextFactory = Callable[[str, frozenset[str]], AgentContext]


def as_reply(result: Reply | str) -> Reply:
    return result if isinstance(result, Reply) else Reply(text=str(result))
