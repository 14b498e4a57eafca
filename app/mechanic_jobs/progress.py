"""A job's progress message: a header, then one line per stage, the last one current.

It is one keyed outbox row, so Telegram edits one message and the terminal prints the
lines that changed. Each stage also lands in `jobs.stage`, and each step (queued, a stage, a
note, the finish) is a `job_events` row written in the same transaction as the chat's text,
so the console's Jobs page (which replays them) never disagrees with the chat; the row's
trigger notifies the page's watchers.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from app import outbox


def header(job_id: str, request: str) -> str:
    line = " ".join(request.split())
    if len(line) > 120:
        line = line[:119] + "…"
    return f"🔧 Mechanic job {job_id}: {line}"


def key(job_id: str) -> str:
    return f"job:{job_id}:progress"


async def record(conn: AsyncConnection[Any], job_id: str, kind: str, text: str) -> None:
    """One step of the job's progress, as the console replays it (kind: queued, stage, note,
    finish); call it in the transaction that puts the chat's text."""
    await conn.execute(
        "INSERT INTO job_events (job_id, kind, text) VALUES (%s, %s, %s)",
        (job_id, kind, text[:2000]),
    )


class ChatProgress:
    def __init__(self, pool: AsyncConnectionPool, job_id: str, conversation: str, request: str):
        self.pool = pool
        self.job_id = job_id
        self.conversation = conversation
        self.header = header(job_id, request)
        self.lines: list[str] = []
        self.current: str | None = None

    async def __call__(self, stage: str) -> None:
        if self.current is not None:
            self.lines.append(f"✓ {self.current}")
        self.current = stage
        await self._show(f"⏳ {stage}", ("stage", stage))

    async def note(self, text: str) -> None:
        self.lines.append(f"↻ {text}")
        await self._show(None, ("note", text))

    async def finish(self, ok: bool) -> None:
        if self.current is not None:
            self.lines.append(f"{'✓' if ok else '✗'} {self.current}")
            self.current = None
        await self._show(None, ("finish", "ok" if ok else "failed"))

    async def _show(self, last: str | None, step: tuple[str, str]) -> None:
        text = "\n".join([self.header, *self.lines, *([last] if last else [])])
        kind, said = step
        stage = said if kind == "stage" else None
        async with self.pool.connection() as conn, conn.transaction():
            await outbox.put(conn, self.conversation, text, key=key(self.job_id))
            await record(conn, self.job_id, kind, said)
            if stage is not None:
                await conn.execute(
                    "UPDATE jobs SET stage = %s, updated_at = now() WHERE id = %s",
                    (stage, self.job_id),
                )
