"""Live parts of the console: one LISTEN connection per process, fanned out to the pages'
server-sent event streams.

A watcher (one browser's stream) registers for a job and gets an `asyncio.Event` that is set
whenever Postgres notifies the job's id on `job_events` (a progress row written, a status
changed; see migration 0014). The watcher then reads what is new itself, after the last event
it sent, so a notification that is coalesced or lost costs nothing: the rows are the truth.
The listening connection is opened with the first watcher and closed with the last; a broken
one is opened again, and every watcher is woken once it listens again (what was notified in
between is read, not missed). No watcher holds a database connection while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterable, AsyncIterator

import anyio
import psycopg
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from app import periodic

log = logging.getLogger(__name__)
CHANNEL = "job_events"
RETRY_SECONDS = 1.0


class JobFeed:
    """Notifications of `job_events` for the watchers of this process, by job id."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._listening: asyncio.Event | None = None

    @property
    def watchers(self) -> int:
        return sum(len(found) for found in self._watchers.values())

    @contextlib.asynccontextmanager
    async def watch(
        self, job_id: str, *, ready_within: float = 5.0
    ) -> AsyncIterator[asyncio.Event]:
        """An event set on each notification for `job_id`. On entry the feed listens (or
        `ready_within` seconds have passed: a database that is down is retried meanwhile),
        so whatever the watcher reads next is followed by a wake-up for anything after it."""
        wake = asyncio.Event()
        self._watchers.setdefault(job_id, set()).add(wake)
        try:
            listening = self._start()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ready_within):
                    await listening.wait()
            yield wake
        finally:
            found = self._watchers.get(job_id)
            if found is not None:
                found.discard(wake)
                if not found:
                    del self._watchers[job_id]
            if not self._watchers:
                await self._stop()

    def _start(self) -> asyncio.Event:
        if self._task is None or self._task.done():
            self._listening = asyncio.Event()
            self._task = asyncio.create_task(self._listen(self._listening), name="console-feed")
        assert self._listening is not None
        return self._listening

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self, listening: asyncio.Event) -> None:
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    listening.set()
                    self._wake_all()  # what was said while nobody listened is read now
                    async for note in conn.notifies():
                        for wake in self._watchers.get(note.payload, ()):
                            wake.set()
            except psycopg.Error as exc:
                if periodic.stop_asked():  # the error was a cancellation's aftermath
                    raise asyncio.CancelledError from None
                log.warning("console feed: the LISTEN connection failed (%s); again in %.0f s",
                            exc, RETRY_SECONDS)  # fmt: skip
            listening.clear()
            await asyncio.sleep(RETRY_SECONDS)

    def _wake_all(self) -> None:
        for found in self._watchers.values():
            for wake in found:
                wake.set()


class EventStream(StreamingResponse):
    """A `text/event-stream` response that ends as soon as the client goes away, whatever
    ASGI version the server speaks (Starlette only listens for a disconnect before 2.4; a
    silent stream would otherwise notice only at its next write)."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterable[str]) -> None:
        super().__init__(content, headers={"x-accel-buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def stream() -> None:
                with contextlib.suppress(OSError):
                    await self.stream_response(send)
                group.cancel_scope.cancel()

            group.start_soon(stream)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()


LINE_END = re.compile(r"\r\n|\r|\n")


def event(name: str | None, data: str, *, event_id: int | None = None) -> str:
    """One server-sent event: every line of `data` on a `data:` line of its own. A line ends
    at CR, LF or CRLF, as the browser reads it, so no text can start a field of its own."""
    head = (f"id: {event_id}\n" if event_id is not None else "") + (
        f"event: {name}\n" if name else ""
    )
    return head + "".join(f"data: {line}\n" for line in LINE_END.split(data)) + "\n"


def comment(text: str) -> str:
    return f": {text}\n\n"


def last_event_id(value: str | None) -> int | None:
    """The Last-Event-ID a reconnecting browser sends (our ids are integers), or None."""
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() and len(value) < 19 else None
