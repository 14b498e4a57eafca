"""The job queue (procrastinate on our Postgres) that carries deliveries to workers.

The web process only enqueues, on the same connection and in the same transaction that
stores the delivery in the inbox: a delivery is either stored with its job or not at all.
Workers run the `process_delivery` task. procrastinate gives us at-least-once execution,
one worker per job, retries with backoff, and heartbeats; on top we sweep jobs left in
`doing` by a worker that died (SIGKILL, lost machine) back to `todo`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from procrastinate import App, JobContext, PsycopgConnector, RetryStrategy
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

QUEUE = "deliveries"
TASK = "persais.process_delivery"

log = logging.getLogger(__name__)

Processor = Callable[[int, str], Awaitable[Any]]


class DeliveryQueue:
    def __init__(
        self,
        *,
        max_attempts: int,
        retry_base_seconds: int,
        stalled_seconds: int = 30,
        processor: Processor | None = None,
    ) -> None:
        self.app = App(connector=PsycopgConnector())
        self.stalled_seconds = stalled_seconds
        self._processor = processor
        # total wait before attempt n+1 = base ** (n + 1): 2, 4, 8, 16 s with the default.
        retry = RetryStrategy(max_attempts=max_attempts, exponential_wait=retry_base_seconds)

        @self.app.task(name=TASK, queue=QUEUE, retry=retry, pass_context=True)
        async def process_delivery(context: JobContext, inbox_id: int) -> None:
            if self._processor is None:
                raise RuntimeError("this queue was opened without a processor")
            await self._processor(inbox_id, context.worker_name or "worker")

        self._task = process_delivery

    async def open(self, pool: AsyncConnectionPool) -> None:
        await self.app.open_async(pool=pool)

    async def close(self) -> None:
        await self.app.close_async()

    async def enqueue(self, conn: AsyncConnection[Any], inbox_id: int) -> int:
        """Add the job on `conn`, inside the caller's transaction."""
        job_id: int = await self._task.configure(connection=conn).defer_async(inbox_id=inbox_id)
        return job_id

    async def enqueue_many(self, conn: AsyncConnection[Any], inbox_ids: list[int]) -> None:
        """Add one job per delivery in a single query, inside the caller's transaction."""
        jobs: list[dict[str, Any]] = [{"inbox_id": inbox_id} for inbox_id in inbox_ids]
        await self._task.configure(connection=conn).batch_defer_async(*jobs)

    async def run_worker(self, *, name: str, concurrency: int) -> None:
        """Work until cancelled; then finish running jobs and stop."""
        sweeper = asyncio.create_task(self._sweep_stalled(), name="stalled-job sweeper")
        try:
            await self.app.run_worker_async(
                queues=[QUEUE],
                name=name,
                concurrency=concurrency,
                install_signal_handlers=False,
                update_heartbeat_interval=max(1.0, self.stalled_seconds / 3),
                stalled_worker_timeout=self.stalled_seconds,
                fetch_job_polling_interval=2.0,
                shutdown_graceful_timeout=20.0,
            )
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    async def _sweep_stalled(self) -> None:
        manager = self.app.job_manager
        while True:
            try:
                for job in await manager.get_stalled_jobs(
                    seconds_since_heartbeat=self.stalled_seconds
                ):
                    log.warning("job %s was left running by a dead worker; retrying it", job.id)
                    await manager.retry_job(job)
            except Exception:  # the sweeper must outlive a passing database error
                log.exception("stalled-job sweep failed")
            await asyncio.sleep(max(1.0, self.stalled_seconds / 2))
