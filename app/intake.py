"""Intake: store verified deliveries with their jobs, committing concurrent ones together.

Every delivery is answered only after its row and its job have committed, so an answered
delivery is never lost. Deliveries that arrive while a commit is in flight wait for the
next one and share it (group commit): one multi-row INSERT and one batched enqueue per
transaction instead of four round trips per delivery. Under light load a batch is one
delivery and nothing waits; under heavy load the batches grow and the database work per
delivery shrinks.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from app.inbox import Delivery
from app.worker.queue import DeliveryQueue

log = logging.getLogger(__name__)

_INSERT = (
    "INSERT INTO inbox (source, delivery_id, event, action, payload)"
    " VALUES (%s, %s, %s, %s, %s::jsonb)"
    " ON CONFLICT (source, delivery_id) DO NOTHING RETURNING id"
)


class Unstorable(ValueError):
    """The database refused this delivery's payload (JSON that jsonb does not accept)."""


@dataclass
class Intake:
    pool: AsyncConnectionPool
    queue: DeliveryQueue
    max_batch: int = 200
    max_concurrent_commits: int = 2
    _pending: list[tuple[Delivery, asyncio.Future[int | None]]] = field(default_factory=list)
    _committing: int = 0

    async def store(self, delivery: Delivery) -> int | None:
        """Store and enqueue; return the inbox id, or None when the delivery id is known."""
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._pending.append((delivery, future))
        self._maybe_commit()
        return await future

    def _maybe_commit(self) -> None:
        if self._pending and self._committing < self.max_concurrent_commits:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            self._committing += 1
            asyncio.get_running_loop().create_task(self._commit(batch))

    async def _commit(self, batch: list[tuple[Delivery, asyncio.Future[int | None]]]) -> None:
        try:
            deliveries = [delivery for delivery, _ in batch]
            results: list[int | None | Unstorable]
            try:
                results = list(await self._write(deliveries))
            except psycopg.DataError:
                # One payload poisoned the batch: store the others one by one, so only the
                # bad one is refused.
                results = [await self._write_one(delivery) for delivery in deliveries]
            for (_, future), inbox_id in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(inbox_id, Unstorable):
                    future.set_exception(inbox_id)
                else:
                    future.set_result(inbox_id)
        except Exception as exc:  # the database is down, say: every waiter hears it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        finally:
            self._committing -= 1
            self._maybe_commit()

    async def _write(self, deliveries: list[Delivery]) -> list[int | None]:
        async with self.pool.connection() as conn, conn.transaction():
            ids = await _insert(conn, deliveries)
            stored = [
                (inbox_id, delivery.lock)
                for inbox_id, delivery in zip(ids, deliveries, strict=True)
                if inbox_id is not None
            ]
            if stored:
                await self.queue.enqueue_many(conn, stored)
        return ids

    async def _write_one(self, delivery: Delivery) -> int | None | Unstorable:
        try:
            return (await self._write([delivery]))[0]
        except psycopg.DataError as exc:
            return Unstorable(str(exc).splitlines()[0])


async def _insert(conn: AsyncConnection[Any], rows: list[Delivery]) -> list[int | None]:
    """One INSERT per row, pipelined in one round trip; a known delivery id gives None
    (also for the second of two equal ids in one batch: the rows run in order)."""
    ids: list[int | None] = []
    async with conn.cursor() as cur:
        await cur.executemany(
            _INSERT,
            [(r.source, r.delivery_id, r.event, r.action, r.body) for r in rows],
            returning=True,
        )
        while True:
            row = await cur.fetchone()
            ids.append(None if row is None else int(row[0]))
            if not cur.nextset():
                break
    return ids
