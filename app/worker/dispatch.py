"""Process one inbox delivery: run its handlers, then record how it ended.

Safe to run again for the same delivery (at-least-once delivery from the queue): a delivery
already closed is left alone, and handlers are written to be idempotent.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from app import inbox
from app.routing import Context, Event, Router
from app.web.metrics import Metrics

log = logging.getLogger(__name__)


class RetryDelivery(Exception):
    """A handler failed; the queue should try the delivery again later."""


@dataclass
class Dispatcher:
    pool: AsyncConnectionPool
    router: Router
    max_attempts: int
    metrics: Metrics | None = None

    async def process(self, inbox_id: int, worker: str) -> str:
        """Return how the delivery ended: processed, ignored, failed, dead or skipped."""
        async with self.pool.connection() as conn:
            delivery = await inbox.fetch(conn, inbox_id)
            if delivery is None:
                log.warning("inbox row %s is gone; nothing to do", inbox_id)
                return "skipped"
            if delivery.status in ("processed", "ignored"):
                return "skipped"
            attempt = await inbox.begin_attempt(conn, inbox_id)

        event = Event(
            source=delivery.source,
            name=delivery.event,
            action=delivery.action,
            delivery_id=delivery.delivery_id,
            payload=delivery.payload,
        )
        handlers = self.router.handlers_for(event)
        try:
            for handler in handlers:
                await handler(event, Context(pool=self.pool, worker=worker))
        except Exception as exc:  # the worker's outer edge: any handler failure is recorded
            dead = attempt >= self.max_attempts
            error = "".join(traceback.format_exception_only(exc)).strip()
            log.warning(
                "delivery %s (%s %s) failed on attempt %d/%d: %s",
                delivery.delivery_id, delivery.source, delivery.event,
                attempt, self.max_attempts, error,
            )  # fmt: skip
            async with self.pool.connection() as conn:
                await inbox.fail(conn, inbox_id, error, dead=dead)
            outcome = "dead" if dead else "failed"
            self._count(delivery.source, outcome)
            if dead:
                return outcome
            raise RetryDelivery(error) from exc

        outcome = "processed" if handlers else "ignored"
        async with self.pool.connection() as conn:
            await inbox.finish(conn, inbox_id, outcome, worker)
        self._count(delivery.source, outcome)
        return outcome

    def _count(self, source: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.processed.labels(source=source, outcome=outcome).inc()
