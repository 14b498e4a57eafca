"""The job queue (procrastinate on our Postgres) that carries deliveries and Mechanic jobs
to workers.

The web process only enqueues, on the same connection and in the same transaction that
stores the delivery in the inbox: a delivery is either stored with its job or not at all.
Workers run the `process_delivery` task. procrastinate gives us at-least-once execution,
one worker per job, retries with backoff, and heartbeats; on top we sweep jobs left in
`doing` by a worker that died (SIGKILL, lost machine) back to `todo`, each on its own: one
that can never go back (a newer job holds its queueing lock) is closed, the reason audited.

Mechanic jobs have their own queue, so a process can work on them alone (`persais chat`
runs them while the person watches), and one lock, so they run one after another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from procrastinate import App, JobContext, PsycopgConnector, RetryStrategy
from procrastinate.exceptions import AlreadyEnqueued, UniqueViolation
from procrastinate.jobs import Job, Status
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from app import audit, periodic

QUEUE = "deliveries"
TASK = "persais.process_delivery"
MECHANIC_QUEUE = "mechanic"
MECHANIC_TASK = "persais.mechanic_job"
MECHANIC_LOCK = "mechanic:persais"  # one repository, one job at a time
DEPLOY_TASK = "persais.deploy"
DEPLOY_LOCK = "deploy:persais"  # deploys and rollbacks one at a time, beside Mechanic jobs
INDEX_TASK = "persais.index"  # memory: bring a repository's index to its head
RETENTION_TASK = "persais.retention"  # periodic: prune what is kept no longer
RETENTION_LOCK = "retention:persais"  # one run at a time, and at most one waiting
POLL_SECONDS = 2.0  # LISTEN/NOTIFY wakes workers; polling is only the fallback
# On stopping, running jobs get this long to finish before they are cancelled (and retried:
# a Mechanic job resumes). A process has 25 s to stop in all (SHUTDOWN_DEADLINE, before
# Fly's SIGKILL at 30); at 20 s a job that would not end left too little for the rest, and
# a stop took 23 s.
GRACEFUL_STOP_SECONDS = 10.0

log = logging.getLogger(__name__)

Processor = Callable[[int, str], Awaitable[Any]]
JobRunner = Callable[[str], Awaitable[None]]
DeployRunner = Callable[..., Awaitable[None]]
IndexRunner = Callable[[str], Awaitable[Any]]
RetentionRunner = Callable[[], Awaitable[Any]]


class DeliveryQueue:
    def __init__(
        self,
        *,
        max_attempts: int,
        retry_base_seconds: int,
        stalled_seconds: int = 30,
        processor: Processor | None = None,
        mechanic: JobRunner | None = None,
        deploy: DeployRunner | None = None,
        index: IndexRunner | None = None,
        retention: RetentionRunner | None = None,
        retention_cron: str | None = None,
    ) -> None:
        self.app = App(connector=PsycopgConnector())
        self.stalled_seconds = stalled_seconds
        self._pool: AsyncConnectionPool | None = None
        self._wakers: set[asyncio.Task[None]] = set()
        self._own_workers: set[int] = set()  # this process's worker ids (the sweeper spares)
        self._processor = processor
        # total wait before attempt n+1 = base ** (n + 1): 2, 4, 8, 16 s with the default.
        retry = RetryStrategy(max_attempts=max_attempts, exponential_wait=retry_base_seconds)

        @self.app.task(name=TASK, queue=QUEUE, retry=retry, pass_context=True)
        async def process_delivery(context: JobContext, inbox_id: int) -> None:
            if self._processor is None:
                raise RuntimeError("this queue was opened without a processor")
            await self._processor(inbox_id, context.worker_name or "worker")

        self._task = process_delivery
        self._mechanic = mechanic

        # The runner reports its own failures to the person; what reaches procrastinate is a
        # shutdown cancelling a run (retried: the job resumes) or a lost database.
        @self.app.task(
            name=MECHANIC_TASK, queue=MECHANIC_QUEUE, retry=RetryStrategy(max_attempts=3, wait=1)
        )
        async def mechanic_job(job_id: str) -> None:
            if self._mechanic is None:
                raise RuntimeError("this queue was opened without a Mechanic runner")
            await self._mechanic(job_id)

        self._mechanic_task = mechanic_job
        self._deploy = deploy

        # Deploys ride the Mechanic's queue (the processes that build agents also release
        # them) under a lock of their own: one at a time, never behind a running Aider.
        @self.app.task(
            name=DEPLOY_TASK, queue=MECHANIC_QUEUE, retry=RetryStrategy(max_attempts=3, wait=1)
        )
        async def deploy_task(
            action: str, subject: int, by: str, conversation: str, rid: str, handoffs: int = 0,
            admin: bool = False,
        ) -> None:  # fmt: skip
            if self._deploy is None:
                raise RuntimeError("this queue was opened without a deployer")
            await self._deploy(action, subject, by, conversation, rid, handoffs, admin)

        self._deploy_task = deploy_task
        self._index = index

        # Indexing rides the Mechanic's queue too (every process that changes code runs
        # it), one run per repository at a time; pushes arriving meanwhile queue one more.
        @self.app.task(
            name=INDEX_TASK, queue=MECHANIC_QUEUE, retry=RetryStrategy(max_attempts=3, wait=5)
        )
        async def index_task(repository: str) -> None:
            if self._index is None:
                raise RuntimeError("this queue was opened without an indexer")
            await self._index(repository)

        self._index_task = index_task
        if retention is not None and retention_cron is not None:
            self._register_retention(retention, retention_cron)

    def _register_retention(self, retention: RetentionRunner, cron: str) -> None:
        """A periodic task: every worker's deferrer offers each tick, and the database takes
        one defer per tick (procrastinate's periodic_defers); the lock runs one at a time
        and the queueing lock lets no second run wait behind a long one."""

        @self.app.periodic(cron=cron, periodic_id="retention")
        @self.app.task(
            name=RETENTION_TASK, queue=QUEUE, lock=RETENTION_LOCK, queueing_lock=RETENTION_LOCK
        )
        async def retention_task(timestamp: int) -> None:
            await retention()

        self._retention_task = retention_task

    async def open(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        await self.app.open_async(pool=pool)

    async def close(self) -> None:
        await self.app.close_async()

    async def enqueue_many(
        self, conn: AsyncConnection[Any], deliveries: list[tuple[int, str | None]]
    ) -> None:
        """Add one job per (inbox id, lock), inside the caller's transaction: one query per
        distinct lock. Jobs sharing a lock run one at a time, in order (procrastinate)."""
        by_lock: dict[str | None, list[dict[str, Any]]] = {}
        for inbox_id, lock in deliveries:
            by_lock.setdefault(lock, []).append({"inbox_id": inbox_id})
        for lock, jobs in by_lock.items():
            await self._task.configure(connection=conn, lock=lock).batch_defer_async(*jobs)

    async def defer_mechanic(self, conn: AsyncConnection[Any], job_id: str) -> None:
        """Queue a Mechanic job inside the caller's transaction."""
        await self._mechanic_task.configure(connection=conn, lock=MECHANIC_LOCK).defer_async(
            job_id=job_id
        )

    async def defer_deploy(
        self, conn: AsyncConnection[Any], *, after: float = 0, **args: Any
    ) -> None:
        """Queue a deploy, rollback or revert inside the caller's transaction (to start no
        sooner than `after` seconds from now)."""
        task = self._deploy_task.configure(
            connection=conn, lock=DEPLOY_LOCK,
            schedule_in={"milliseconds": int(after * 1000)} if after > 0 else None,
        )  # fmt: skip
        await task.defer_async(**args)

    async def defer_index(self, repository: str) -> None:
        """Queue an index run of `repository`, unless one is already waiting to start."""
        lock = f"memory:{repository}"
        task = self._index_task.configure(lock=lock, queueing_lock=lock)
        with contextlib.suppress(AlreadyEnqueued):
            await task.defer_async(repository=repository)

    async def run_worker(
        self, *, name: str, concurrency: int, queues: tuple[str, ...] = (QUEUE, MECHANIC_QUEUE)
    ) -> None:
        """Work until cancelled; then finish running jobs and stop."""
        sweeper = asyncio.create_task(self._sweep_stalled(), name="stalled-job sweeper")
        try:
            await self.app.run_worker_async(
                queues=list(queues),
                name=name,
                concurrency=concurrency,
                install_signal_handlers=False,
                update_heartbeat_interval=max(1.0, self.stalled_seconds / 3),
                stalled_worker_timeout=self.stalled_seconds,
                fetch_job_polling_interval=POLL_SECONDS,
                shutdown_graceful_timeout=GRACEFUL_STOP_SECONDS,
                worker_middleware=[self._wake_after_locked_job],
            )
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    async def _wake_after_locked_job(
        self, call_next: Callable[[], Awaitable[Any]], context: JobContext, worker: Any
    ) -> Any:
        """A job that waited behind another of its lock (the next message of one chat) is
        runnable only once that one is finished, and procrastinate does not look for work
        when a job finishes: it waits for the next NOTIFY or poll. So when a locked job is
        done (its status written), we send the NOTIFY an insert would have sent, waking
        the workers of every process."""
        if worker.worker_id is not None:
            self._own_workers.add(worker.worker_id)
        result = await call_next()
        if context.job.lock is not None:
            task = asyncio.current_task()
            if task is not None:
                queue = context.job.queue
                task.add_done_callback(lambda _: self._spawn_wake(queue))
        return result

    def _spawn_wake(self, queue: str) -> None:
        waker = asyncio.get_running_loop().create_task(self._wake(queue))
        self._wakers.add(waker)
        waker.add_done_callback(self._wakers.discard)

    async def _wake(self, queue: str) -> None:
        if self._pool is None:
            return
        try:
            async with self._pool.connection() as conn:
                await conn.execute(
                    "SELECT pg_notify(%s, %s)",
                    (f"procrastinate_queue_v1#{queue}", '{"type": "job_inserted", "job_id": 0}'),
                )
        except Exception:  # a missed wake-up costs one poll interval, nothing more
            log.warning("could not wake the workers after a locked job", exc_info=True)

    async def _sweep_stalled(self) -> None:
        while True:
            try:
                stalled = await self.app.job_manager.get_stalled_jobs(
                    seconds_since_heartbeat=self.stalled_seconds
                )
            except Exception:  # the sweeper must outlive a passing database error
                if periodic.stop_asked():  # the error was a cancellation's aftermath
                    raise asyncio.CancelledError from None
                log.exception("could not look for stalled jobs")
                stalled = []
            for job in stalled:
                if job.worker_id not in self._own_workers:  # ours: a slow beat, not a death
                    await self._revive(job)
            await asyncio.sleep(max(1.0, self.stalled_seconds / 2))

    async def _revive(self, job: Job) -> None:
        """Put a job a dead worker left running back to `todo`, on its own: whatever
        happens to this one, the sweep goes on to the next."""
        log.warning("job %s was left running by a dead worker; retrying it", job.id)
        try:
            await self.app.job_manager.retry_job(job)
        except UniqueViolation as exc:
            if exc.queueing_lock is None:
                log.exception("could not retry stalled job %s", job.id)
                return
            # A newer job of its kind waits under the same queueing lock (the index queued
            # at restart): this one can never go back to `todo`, and the newer does its work.
            reason = f"superseded: a newer job waits under queueing lock {exc.queueing_lock}"
            await self._close(job, reason)
        except Exception:  # another sweeper took it first, or the database hiccuped
            log.exception("could not retry stalled job %s", job.id)

    async def _close(self, job: Job, reason: str) -> None:
        """Mark a job finished for good (procrastinate's `failed`), the reason audited."""
        try:
            await self.app.job_manager.finish_job(job, Status.FAILED, delete_job=False)
            if self._pool is not None:
                async with self._pool.connection() as conn:
                    await audit.record(
                        conn, actor="persais", action="job.closed", subject=f"job:{job.id}",
                        detail={"task": job.task_name, "reason": reason},
                    )  # fmt: skip
        except Exception:
            log.exception("could not close stalled job %s (%s)", job.id, reason)
            return
        log.warning("closed stalled job %s (%s): %s", job.id, job.task_name, reason)
