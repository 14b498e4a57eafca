"""The terminal channel (`persais chat`): the same orchestrator over stdin and stdout.

Buttons become numbered choices: type the number to press it. The conversation is the
thread `cli:<name>` in the server's database, so it shows in /status like any other, and
a question left open when the chat ended is offered again when it starts.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TextIO

from app.orchestrator import approvals
from app.orchestrator.approvals import Approval
from app.orchestrator.orchestrator import Inbound, Orchestrator, Outbound

Reader = Callable[[], Awaitable[str]]


class TerminalChat:
    def __init__(self, orchestrator: Orchestrator, name: str, out: TextIO = sys.stdout) -> None:
        self.orchestrator = orchestrator
        self.name = name
        self.user = f"cli:{name}"
        self.out = out
        self.numbers: dict[str, tuple[str, str]] = {}  # "1" -> (approval id, choice key)

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    async def run(self, read: Reader) -> None:
        self.say(f"Persais chat as {self.name}. /help lists commands; Ctrl-D leaves.")
        for question in await self._open_questions():
            self._show(Outbound(question.prompt, question.agent, question))
        while True:
            self.out.write("> ")
            self.out.flush()
            line = await read()
            if not line:
                self.say("")
                return
            text = line.strip()
            if not text:
                continue
            if text in self.numbers:
                await self._press(*self.numbers[text])
                continue
            inbound = Inbound(
                conversation=self.user, channel="terminal", user=self.user,
                user_name=self.name, text=text, admin=True,
            )  # fmt: skip
            for reply in await self.orchestrator.handle(inbound):
                self._show(reply)

    def _show(self, reply: Outbound) -> None:
        self.say(reply.text)
        if reply.approval is not None:
            buttons = []
            for key, label in reply.approval.choices:
                number = str(len(self.numbers) + 1)
                self.numbers[number] = (reply.approval.id, key)
                buttons.append(f"[{number}] {label}")
            self.say("  " + "  ".join(buttons))

    async def _press(self, approval_id: str, key: str) -> None:
        press = await self.orchestrator.press(approval_id, key, user=self.user, admin=True)
        self.say(press.notice)
        for number, (aid, _) in list(self.numbers.items()):
            if aid == approval_id:
                del self.numbers[number]
        for reply in press.outbound:
            self._show(reply)

    async def _open_questions(self) -> list[Approval]:
        async with self.orchestrator.pool.connection() as conn:
            return await approvals.pending_in(conn, self.user)


async def stdin_reader() -> str:
    return await asyncio.to_thread(sys.stdin.readline)
