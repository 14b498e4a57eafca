"""The terminal channel (`persais chat`): the same orchestrator over stdin and stdout.

Buttons become numbered choices: type the number to press it. The conversation is the
thread `cli:<name>` in the server's database, so it shows in /status like any other, and
a question left open when the chat ended is offered again when it starts.

What workers say later (a Mechanic job's progress and its pull request) arrives through
the outbox: a progress message edited in place shows here as one line per stage. A turn
(what was typed, its answer, and the notes it caused, such as a new job's progress
message) prints whole: the outbox poll waits for it. At the end of input the chat waits
for this conversation's running jobs before it leaves; Ctrl-C leaves at once, with one line.

How a line is read (editing, history, the prompt under later output) is terminal_input's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from app import outbox
from app.channels.terminal_lines import Interrupted
from app.deploy.service import Deployments
from app.mechanic_jobs.service import MechanicJobs
from app.orchestrator import approvals
from app.orchestrator.approvals import Approval
from app.orchestrator.orchestrator import Inbound, Orchestrator, Outbound

Reader = Callable[[], Awaitable[str]]


class TerminalChat:
    def __init__(
        self,
        orchestrator: Orchestrator,
        name: str,
        out: TextIO = sys.stdout,
        *,
        jobs: MechanicJobs | None = None,
        deployments: Deployments | None = None,
        poll_seconds: float = 0.2,
        prompt: str | None = "> ",
    ) -> None:
        self.prompt = prompt  # None: the line reader draws its own
        self.orchestrator = orchestrator
        self.jobs = jobs
        self.deployments = deployments
        self.poll_seconds = poll_seconds
        self.name = name
        self.user = f"cli:{name}"
        self.out = out
        self.numbers: dict[str, tuple[str, str]] = {}  # "1" -> (approval id, choice key)
        self.labels: dict[str, str] = {}  # "1" -> "Ship it"
        self.offered: set[str] = set()  # approval ids whose choices are numbered
        self._numbering = itertools.count(1)
        self._turn = asyncio.Lock()  # the poll prints nothing in the middle of a turn

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    async def run(self, read: Reader) -> None:
        self.say(f"Persais chat as {self.name}. /help lists commands; Ctrl-D leaves.")
        await self._deliver()  # what was said while no chat was open
        for question in await self._open_questions():
            if question.id not in self.offered:
                self._show(Outbound(question.prompt, question.agent, question))
        poller = asyncio.create_task(self._poll(), name="terminal outbox")
        try:
            await self._converse(read)
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    async def _converse(self, read: Reader) -> None:
        while True:
            if self.prompt is not None:
                self.out.write(self.prompt)
                self.out.flush()
            try:
                line = await read()
            except Interrupted:
                self.say(LEFT)
                return
            if not line:
                self.say("" if self.prompt is not None else "Bye.")
                await self._wait_for_jobs()
                return
            text = line.strip()
            if not text:
                continue
            async with self._turn:
                await self._take(text)
                await self._deliver()  # what the turn set going, after its answer

    async def _take(self, text: str) -> None:
        if text in self.numbers:
            await self._press(*self.numbers[text])
            return
        inbound = Inbound(
            conversation=self.user, channel="terminal", user=self.user,
            user_name=self.name, text=text, admin=True,
        )  # fmt: skip
        for reply in await self.orchestrator.handle(inbound):
            self._show(reply)

    def _show(self, reply: Outbound) -> None:
        self.say(reply.text)
        if reply.approval is not None:
            self.offered.add(reply.approval.id)
            buttons = []
            for key, label, *_ in reply.approval.choices:
                number = str(next(self._numbering))  # never reused within a session
                self.numbers[number] = (reply.approval.id, key)
                self.labels[number] = label
                buttons.append(f"[{number}] {label}")
            self.say("  " + "  ".join(buttons))

    async def _press(self, approval_id: str, key: str) -> None:
        press = await self.orchestrator.press(approval_id, key, user=self.user, admin=True)
        self.say(press.notice)
        if press.link:  # a link decides nothing: the choices stay
            return
        for number, (aid, _) in list(self.numbers.items()):
            if aid == approval_id:
                del self.numbers[number]
        for reply in press.outbound:
            self._show(reply)

    def open_choices(self) -> list[tuple[str, str]]:
        """The buttons that can be pressed now, by number: for a line editor's menu."""
        return [(number, self.labels.get(number, "")) for number in self.numbers]

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            async with self._turn:
                await self._deliver()

    async def _deliver(self) -> None:
        await outbox.deliver(
            self.orchestrator.pool, self._show_note, conversation=self.user, as_written=True
        )

    async def _show_note(self, note: outbox.Note) -> dict[str, Any] | None:
        question = note.approval and await self.orchestrator.open_question(note.approval)
        if question:
            self._show(Outbound(note.text, question.agent, question))
            return {"text": note.text}
        lines = note.text.splitlines()
        if note.key is not None and note.channel_ref:  # an edit: the lines that changed
            before = note.channel_ref.get("text", "").splitlines()
            same = next(
                (i for i, (a, b) in enumerate(zip(before, lines, strict=False)) if a != b),
                min(len(before), len(lines)),
            )
            lines = lines[same:]
        for line in lines:
            self.say(line)
        return {"text": note.text}

    async def _wait_for_jobs(self) -> None:
        """End of input with jobs or deploys running here: stay to show how they end."""
        running = await self._running()
        if running:
            self.say(f"Waiting for {', '.join(running)} to finish (Ctrl-C leaves; it goes on).")
        while running:
            await asyncio.sleep(self.poll_seconds)
            async with self._turn:
                await self._deliver()
            running = await self._running()
        async with self._turn:
            await self._deliver()

    async def _running(self) -> list[str]:
        jobs = await self.jobs.active_in(self.user) if self.jobs is not None else []
        deploys = await self.deployments.active_in(self.user) if self.deployments else []
        return [f"job {job}" for job in jobs] + deploys

    async def _open_questions(self) -> list[Approval]:
        async with self.orchestrator.pool.connection() as conn:
            return await approvals.pending_in(conn, self.user)


LEFT = "Left the chat."
