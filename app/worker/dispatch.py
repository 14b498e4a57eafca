"""Process one inbox delivery: run its handlers, then record how it ended.

Safe to run again for the same delivery (at-least-once delivery from the queue): a delivery
already closed is left alone, and handlers are written to be idempotent.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, replace

from psycopg_pool import AsyncConnectionPool

from app import inbox
from app.routing import Context, DropDelivery, Event, Router
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
            attempt = await inbox.begin_attempt(conn, inbox_id)
            if attempt is None:  # gone, or closed by an earlier run: nothing to do
                return "skipped"
            event = Event(
                source=attempt.source,
                name=attempt.event,
                action=attempt.action,
                delivery_id=attempt.delivery_id,
                payload={},
            )
            handlers = self.router.handlers_for(event)
            if handlers:  # the payload is read only when someone will look at it
                event = replace(event, payload=await inbox.payload(conn, inbox_id))

        dropped: DropDelivery | None = None
        try:
            for handler in handlers:
                await handler(event, Context(pool=self.pool, worker=worker))
        except DropDelivery as exc:
            dropped = exc
            log.info(
                "dropped delivery %s (%s %s): %s",
                event.delivery_id, event.source, event.name, exc,
            )  # fmt: skip
        except Exception as exc:  # the worker's outer edge: any handler failure is recorded
            dead = attempt.attempt >= self.max_attempts
            error = "".join(traceback.format_exception_only(exc)).strip()
            log.warning(
                "delivery %s (%s %s) failed on attempt %d/%d: %s",
                event.delivery_id, event.source, event.name,
                attempt.attempt, self.max_attempts, error,
            )  # fmt: skip
            async with self.pool.connection() as conn:
                await inbox.fail(conn, inbox_id, error, dead=dead)
            outcome = "dead" if dead else "failed"
            self._count(event.source, outcome)
            if dead:
                return outcome
            raise RetryDelivery(error) from exc

        outcome = "processed" if handlers and dropped is None else "ignored"
        if not handlers:
            log.debug(
                "delivery %s (%s %s): no handler reads it",
                event.delivery_id, event.source, event.name,
            )  # fmt: skip
            self._drop(event.source, "unhandled_kind")
        elif dropped is not None:
            self._drop(event.source, dropped.reason)
        async with self.pool.connection() as conn:
            await inbox.finish(conn, inbox_id, outcome, worker)
        self._count(event.source, outcome)
        return outcome

    def _drop(self, source: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.dropped.labels(source=source, reason=reason).inc()

    def _count(self, source: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.processed.labels(source=source, outcome=outcome).inc()
