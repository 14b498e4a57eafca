"""A job's progress message: a header, then one line per stage, the last one current.

It is one keyed outbox row, so Telegram edits one message and the terminal prints the
lines that changed. Each stage also lands in `jobs.stage`.
"""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from app import outbox


def header(job_id: str, request: str) -> str:
    line = " ".join(request.split())
    if len(line) > 120:
        line = line[:119] + "…"
    return f"🔧 Mechanic job {job_id}: {line}"


def key(job_id: str) -> str:
    return f"job:{job_id}:progress"


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
        await self._show(f"⏳ {stage}", stage=stage)

    async def note(self, text: str) -> None:
        self.lines.append(f"↻ {text}")
        await self._show(None)

    async def finish(self, ok: bool) -> None:
        if self.current is not None:
            self.lines.append(f"{'✓' if ok else '✗'} {self.current}")
            self.current = None
        await self._show(None)

    async def _show(self, last: str | None, *, stage: str | None = None) -> None:
        text = "\n".join([self.header, *self.lines, *([last] if last else [])])
        async with self.pool.connection() as conn:
            await outbox.put(conn, self.conversation, text, key=key(self.job_id))
            if stage is not None:
                await conn.execute(
                    "UPDATE jobs SET stage = %s, updated_at = now() WHERE id = %s",
                    (stage, self.job_id),
                )
