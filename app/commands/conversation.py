"""`chat` and `agents`: talking to Persais here, and what agents it has."""

from __future__ import annotations

import argparse
import logging
import re
from typing import TYPE_CHECKING, Any

from app.commands.running import Exit, with_conversations
from app.settings import Settings

if TYPE_CHECKING:
    from app.conversations import Conversations


def register(commands: Any) -> None:
    chat = commands.add_parser("chat", help="talk to Persais in this terminal")
    chat.add_argument("--name", default="local", help="who you are (the thread is cli:NAME)")
    chat.set_defaults(func=cmd_chat)

    agents = commands.add_parser("agents", help="load the agents and show each, or why not")
    agents.set_defaults(func=cmd_agents)


def cmd_chat(settings: Settings, args: argparse.Namespace) -> int:
    from app.channels.terminal import LEFT, TerminalChat
    from app.channels.terminal_input import line_reader

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", args.name):
        raise Exit(2, "--name: letters, digits, _ . - (at most 32)")
    logging.getLogger().setLevel(logging.WARNING)  # the terminal is the conversation

    from app.worker.queue import MECHANIC_QUEUE

    async def body(conversations: Conversations) -> int:
        history = settings.home / "chat_history"
        choices: list[TerminalChat] = []  # the menu asks the chat made below
        with line_reader(history, lambda: choices[0].open_choices() if choices else []) as lines:
            chat = TerminalChat(
                conversations.orchestrator, args.name, lines.out, jobs=conversations.mechanic,
                deployments=conversations.deployments, prompt=lines.prompt,
            )  # fmt: skip
            choices.append(chat)
            await chat.run(lines.read)
        return 0

    # Mechanic jobs asked for here run here too (a running `persais serve` may take them).
    try:
        return with_conversations(settings, body, worker_queues=(MECHANIC_QUEUE,))
    except KeyboardInterrupt:  # Ctrl-C during a turn or while waiting for jobs: one line
        print(f"\n{LEFT}", flush=True)
        return 130


def cmd_agents(settings: Settings, args: argparse.Namespace) -> int:
    async def body(conversations: Conversations) -> int:
        agents = conversations.current
        print(f"agent set {agents.fingerprint} from {agents.root}")
        print(conversations.deployments.here.where())
        print(f"dynamic agents: {conversations.jail.describe()}")
        for loaded in sorted(agents.agents.values(), key=lambda a: a.manifest.name):
            m = loaded.manifest
            kind = "built-in" if loaded.builtin else "dynamic"
            print(f"  ok           {m.name:<16} /{m.command:<16} {m.version:<8} {kind}")
        for q in sorted(agents.quarantined.values(), key=lambda q: q.name):
            print(f"  quarantined  {q.name:<16} {q.reason}")
        return 1 if agents.quarantined else 0

    return with_conversations(settings, body)
