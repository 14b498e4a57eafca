"""A worker's warm-up: what its handlers need, imported and started before `/ready` says 200.

LangGraph, aiogram and githubkit take seconds of CPU to import. The warm-up used to import
them on the event loop after `/ready` had turned 200, and froze the loop 4.4-8.4 s in 6 of
7 starts: the first webhook waited 4.3 s. Now the imports run in a thread (the loop keeps
answering meanwhile, `/ready` with 503 "starting"), the agents and channels then start on
the loop (quick once the modules are in), and only then does `/ready` turn 200, so the
first delivery after it is answered at once.

A warm-up that fails (the agent set cannot start: a database hiccup, a release that will
not sync) still finishes: the process serves (webhooks are stored, deliveries retried),
`/ready` is 200 and says `"warm-up": {"ok": false, "error": ...}`, and the conversations
start again on first use. A broken agent set must never keep the process from serving.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger(__name__)

CONVERSATIONS = "app.conversations"  # LangGraph, the agents' registry, the Mechanic
TELEGRAM = "app.telegram.channel"  # aiogram
GITHUB = "app.github.service"  # githubkit


def prepare(modules: Sequence[str]) -> None:
    """Import `modules` and build the models their first use would build (in a thread)."""
    for name in modules:
        importlib.import_module(name)
    if TELEGRAM in modules:
        from app.telegram import lean_types

        lean_types.build()


class WarmUp:
    """The warm-up's state: not begun, importing, starting, finished (well or not)."""

    def __init__(self) -> None:
        self.modules: tuple[str, ...] = ()
        self.stage = "not begun"
        self.seconds: float | None = None
        self.error: str | None = None
        self._imports: asyncio.Task[None] | None = None

    @property
    def finished(self) -> bool:
        return self.seconds is not None

    async def run(self, modules: Sequence[str], start: Callable[[], Awaitable[object]]) -> None:
        began = time.monotonic()
        self.modules = tuple(modules)
        try:
            self.stage = "importing"
            self._imports = asyncio.create_task(asyncio.to_thread(prepare, self.modules))
            await self._imports
            self.stage = "starting"
            await start()
        except Exception as exc:  # a broken agent set must not take the worker down
            log.exception("starting conversations failed; will retry on first use")
            self.error = f"{type(exc).__name__}: {exc}"[:300]
        self.stage = "finished"
        self.seconds = round(time.monotonic() - began, 2)

    async def imported(self) -> None:
        """Wait for the warm-up's imports, if they are under way: importing the same module
        on the loop meanwhile would block it on the import lock until the thread is done."""
        if self._imports is not None and not self._imports.done():
            await asyncio.wait([self._imports])

    def summary(self) -> dict[str, object]:
        """For `/ready`: 200 waits for `finished`; `ok` says whether it went well."""
        report: dict[str, object] = {"finished": self.finished, "ok": self.finished}
        if not self.finished:
            report["note"] = self.stage
        else:
            report["seconds"] = self.seconds
        if self.error is not None:
            report.update(ok=False, error=self.error, note="serving; started again on first use")
        report["modules"] = list(self.modules)
        return report
