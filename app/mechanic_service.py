"""Mechanic jobs in the chat: started from a conversation, run by a worker, told back.

`start` records the job and queues it in one transaction. A worker runs it (`run`): one
progress message in the outbox, edited through the stages; at the end the pull request
with [Deploy] [Abort] [View PR], asked as an approval so the buttons outlive restarts.

A job is durable. `jobs.attempts` counts runs: a worker that dies mid-job (SIGKILL) leaves
its queue job stalled; the sweeper hands it to a worker again, and the run starts over in a
fresh worktree, saying so in the chat. The forge opens at most one pull request per job, so
a run that died after publishing finds its pull request again. After `MAX_RUNS` the job
fails, and the person is told.

`/abort` sets `abort_requested_at`; the run watches for it (its heartbeat, twice a second)
and cancels: Aider's process group is killed, the worktree removed, the branch deleted and
the pull request, if any, closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from app import audit, outbox
from app.agents.base import Choice, Reply
from app.orchestrator.approvals import Approval
from app.settings import Settings

log = logging.getLogger(__name__)
MAX_RUNS = 3
HEARTBEAT_SECONDS = 0.5
ACTIVE = ("queued", "running")

Defer = Callable[[AsyncConnection[Any], str], Awaitable[None]]
Ask = Callable[..., Awaitable[Approval]]  # Orchestrator.ask


@dataclass(frozen=True)
class Job:
    id: str
    conversation: str
    requested_by: str
    request: str
    status: str
    stage: str | None
    attempts: int
    abort_requested_at: datetime | None
    abort_requested_by: str | None
    template_only: bool
    given_plan: dict[str, Any] | None
    plan: dict[str, Any] | None
    branch: str | None
    pr_number: int | None
    pr_url: str | None
    rounds: int
    cost: Any
    approval: str | None
    message: str | None


_COLUMNS = ", ".join(Job.__dataclass_fields__)


class ChatProgress:
    """The job's progress message: a header, then one line per stage, the last one current.
    Each stage also lands in `jobs.stage`."""

    def __init__(self, pool: AsyncConnectionPool, job: Job) -> None:
        self.pool = pool
        self.job = job
        self.header = f"🔧 Mechanic job {job.id}: {_one_line(job.request, 120)}"
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
            await outbox.put(conn, self.job.conversation, text, key=f"job:{self.job.id}:progress")
            if stage is not None:
                await conn.execute(
                    "UPDATE jobs SET stage = %s, updated_at = now() WHERE id = %s",
                    (stage, self.job.id),
                )


class MechanicJobs:
    """The "mechanic" capability: what the Mechanic agent and the worker do with jobs."""

    def __init__(
        self, settings: Settings, pool: AsyncConnectionPool, *, defer: Defer | None, ask: Ask
    ) -> None:
        self.settings = settings
        self.pool = pool
        self._defer = defer
        self._ask = ask

    @property
    def model_configured(self) -> bool:
        return self.settings.llm_api_key is not None

    # --- asked from the chat -------------------------------------------------------------

    async def start(
        self,
        *,
        conversation: str,
        user: str,
        request: str,
        plan: dict[str, Any] | None = None,
        hold: bool = False,
    ) -> str:
        """Record a job and queue it (or, with `hold`, keep it until `confirm`). A request
        that answers the Mechanic's clarifying question continues the request it asked about."""
        import secrets

        job_id = secrets.token_hex(4)
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT id, request, message FROM jobs WHERE conversation = %s"
                " AND status = 'question' ORDER BY created_at DESC LIMIT 1 FOR UPDATE",
                (conversation,),
            )
            asked = await cur.fetchone()
            if asked is not None and plan is None:
                await conn.execute("UPDATE jobs SET status = 'answered' WHERE id = %s", (asked[0],))
                request = f"{asked[1]}\n\nI asked: {asked[2]}\nThe answer: {request}"
            await conn.execute(
                "INSERT INTO jobs (id, conversation, requested_by, request, status,"
                " template_only, given_plan) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (job_id, conversation, user, request, "proposed" if hold else "queued",
                 plan is not None,
                 Jsonb(plan) if plan is not None else None),
            )  # fmt: skip
            await audit.record(
                conn, actor=user, action="mechanic.requested", subject=f"job:{job_id}",
                detail={"request": request[:500], "template_only": plan is not None},
            )  # fmt: skip
            if not hold:
                await self._queue(conn, job_id)
        return job_id

    async def confirm(self, job_id: str) -> bool:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE jobs SET status = 'queued', updated_at = now()"
                " WHERE id = %s AND status = 'proposed'",
                (job_id,),
            )
            if cur.rowcount != 1:
                return False
            await self._queue(conn, job_id)
        return True

    async def decline(self, job_id: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE jobs SET status = 'failed', message = 'declined', updated_at = now()"
                " WHERE id = %s AND status = 'proposed'",
                (job_id,),
            )

    async def _queue(self, conn: AsyncConnection[Any], job_id: str) -> None:
        if self._defer is None:
            raise RuntimeError("this process has no job queue")
        await self._defer(conn, job_id)
        job = await self._get(conn, job_id)
        assert job is not None
        await outbox.put(
            conn, job.conversation, ChatProgress(self.pool, job).header + "\n⏳ queued",
            key=f"job:{job_id}:progress",
        )  # fmt: skip

    async def abort(self, conversation: str, user: str, *, admin: bool) -> str:
        """`/abort`: stop this conversation's latest job, or withdraw its pull request."""
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE conversation = %s"
                " AND status IN ('queued', 'running', 'opened') ORDER BY created_at DESC LIMIT 1",
                (conversation,),
            )
            row = await cur.fetchone()
            if row is None:
                return "No Mechanic job is running here."
            job = Job(**row)
            if job.requested_by != user and not admin:
                await audit.record(conn, actor=user, action="mechanic.abort_refused",
                                   subject=f"job:{job.id}")  # fmt: skip
                return f"Only the person who asked for job {job.id}, or an admin, may abort it."
            if job.status == "opened":
                return await self.withdraw(job.id, by=user)
            await conn.execute(
                "UPDATE jobs SET abort_requested_at = now(), abort_requested_by = %s"
                " WHERE id = %s AND abort_requested_at IS NULL",
                (user, job.id),
            )
            await audit.record(conn, actor=user, action="mechanic.abort", subject=f"job:{job.id}")
        return f"Stopping job {job.id}…"

    async def withdraw(self, job_id: str, *, by: str) -> str:
        """Abort a job whose pull request is open: close it and delete its branch."""
        async with self.pool.connection() as conn:
            job = await self._get(conn, job_id)
            if job is None or job.status != "opened":
                state = job.status if job else "unknown"
                return f"Job {job_id} has no open pull request to abort ({state})."
        await self._forge().withdraw(job_id=job_id, branch=job.branch or "")
        text = (
            f"⏹ Job {job_id} aborted: pull request #{job.pr_number} closed and branch "
            f"{job.branch} deleted."
        )
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE jobs SET status = 'aborted', message = %s, updated_at = now()"
                " WHERE id = %s AND status = 'opened'",
                (text, job_id),
            )
            if job.approval is not None:  # its buttons now answer "already answered"
                await conn.execute(
                    "UPDATE approvals SET status = 'decided', choice = 'abort', decided_by = %s,"
                    " decided_at = now(), delivered_at = now()"
                    " WHERE id = %s AND status = 'pending'",
                    (by, job.approval),
                )
            await audit.record(conn, actor=by, action="mechanic.withdrawn", subject=f"job:{job_id}",
                               detail={"pr": job.pr_number, "branch": job.branch})  # fmt: skip
        return text

    async def job(self, job_id: str) -> Job | None:
        async with self.pool.connection() as conn:
            return await self._get(conn, job_id)

    async def active_in(self, conversation: str) -> list[str]:
        """Jobs of this conversation still running, or finished but not yet told."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id FROM jobs WHERE conversation = %s AND (status IN ('queued', 'running')"
                " OR (attempts > 0 AND told_at IS NULL AND status <> 'answered'))",
                (conversation,),
            )
            return [row[0] for row in await cur.fetchall()]

    # --- run by a worker -----------------------------------------------------------------

    async def run(self, job_id: str) -> None:
        from app import mechanic_jobs
        from mechanic.job import JobOutcome

        async with self.pool.connection() as conn:
            job = await self._get(conn, job_id)
            if job is None:
                log.warning("mechanic job %s is not in the jobs table", job_id)
                return
            if job.status not in ACTIVE:  # finished before its worker could say so
                await self._announce(job)
                return
            cur = await conn.execute(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, updated_at = now()"
                " WHERE id = %s RETURNING attempts",
                (job_id,),
            )
            row = await cur.fetchone()
            assert row is not None
            runs = int(row[0])
        progress = ChatProgress(self.pool, job)
        if runs > 1:
            await progress.note(f"resumed after an interruption (run {runs} of {MAX_RUNS})")
        if runs > MAX_RUNS:
            outcome = JobOutcome("failed", f"The job was interrupted {runs - 1} times; I gave up.")
        elif job.abort_requested_at is not None:
            outcome = JobOutcome("aborted", "")
        else:
            outcome = await self._execute(job, progress)
        if outcome.status == "aborted":
            await self._finish_aborted(job, progress, outcome)
            return
        await mechanic_jobs.record_outcome(self.pool, job_id, outcome)
        await progress.finish(outcome.status in ("opened", "question"))
        async with self.pool.connection() as conn:
            await audit.record(
                conn, actor="mechanic", action=f"mechanic.{outcome.status}",
                subject=f"job:{job_id}",
                detail={"rounds": outcome.rounds, "cost": outcome.cost,
                        "message": outcome.message[:500]},
            )  # fmt: skip
            finished = await self._get(conn, job_id)
        assert finished is not None
        await self._announce(finished)

    async def _execute(self, job: Job, progress: ChatProgress) -> Any:
        from app import mechanic_jobs
        from mechanic.job import JobOutcome

        try:
            deps = mechanic_jobs.job_deps(
                self.settings, self.pool, progress, use_aider=not job.template_only
            )
        except mechanic_jobs.MechanicUnavailable as exc:
            return JobOutcome("failed", f"The Mechanic cannot run here: {exc}")
        work = asyncio.create_task(self._plan_and_build(job, deps))
        aborted = asyncio.Event()
        watch = asyncio.create_task(self._watch(job.id, work, aborted))
        try:
            return await work  # a worker shutting down cancels us, and with us `work`
        except asyncio.CancelledError:
            if not aborted.is_set():
                raise  # the queue runs the job again later: it resumes
            return JobOutcome("aborted", "")
        except Exception as exc:  # a broken plan, git, the forge: the job fails, told plainly
            log.exception("mechanic job %s failed", job.id)
            return JobOutcome("failed", f"The job stopped on an error: {str(exc)[:500]}")
        finally:
            watch.cancel()

    async def _plan_and_build(self, job: Job, deps: Any) -> Any:
        """Plan once: the plan is kept with the job, so a resumed run builds the same thing
        (and does not ask the model again)."""
        from mechanic.job import JobOutcome, run_job
        from mechanic.plan import Clarification, Plan, make_plan

        known = job.given_plan or job.plan
        if known is not None:
            plan = Plan.model_validate(known)
        else:
            await deps.progress("plan")
            planned = await make_plan(job.request, deps.model)
            if isinstance(planned, Clarification):
                return JobOutcome("question", planned.question)
            plan = planned
            async with self.pool.connection() as conn:
                await conn.execute(
                    "UPDATE jobs SET plan = %s WHERE id = %s", (Jsonb(plan.model_dump()), job.id)
                )
        return await run_job(job.id, job.request, deps, plan=plan)

    async def _watch(self, job_id: str, work: asyncio.Task[Any], aborted: asyncio.Event) -> None:
        """The heartbeat of a running job, and its ear for /abort."""
        while not work.done():
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                async with self.pool.connection() as conn:
                    cur = await conn.execute(
                        "UPDATE jobs SET updated_at = now() WHERE id = %s"
                        " RETURNING abort_requested_at IS NOT NULL",
                        (job_id,),
                    )
                    row = await cur.fetchone()
            except Exception:  # a missed beat is not a reason to stop the job
                log.warning("job %s heartbeat failed", job_id, exc_info=True)
                continue
            if row is not None and row[0]:
                aborted.set()
                work.cancel()
                return

    async def _finish_aborted(self, job: Job, progress: ChatProgress, outcome: Any) -> None:
        # The worktree is gone (run_job's cleanup ran as the cancel went through it); a pull
        # request opened just before the abort landed is closed here.
        await self._forge().withdraw(job_id=job.id, branch="")
        who = job.abort_requested_by
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT abort_requested_by FROM jobs WHERE id = %s", (job.id,))
            row = await cur.fetchone()
            who = row[0] if row else who
        text = (
            f"⏹ Job {job.id} aborted by {who or 'request'}: Aider stopped, worktree and "
            "branch removed."
        )
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE jobs SET status = 'aborted', message = %s, cost = %s, updated_at = now()"
                " WHERE id = %s",
                (text, outcome.cost, job.id),
            )
            await audit.record(conn, actor="mechanic", action="mechanic.aborted",
                               subject=f"job:{job.id}")  # fmt: skip
        await progress.finish(False)
        async with self.pool.connection() as conn:
            await outbox.put(conn, job.conversation, text, key=f"job:{job.id}:result")
            await self._told(conn, job.id)

    async def _announce(self, job: Job) -> None:
        """Tell the conversation how the job ended; safe to repeat (keyed outbox rows, and
        the pull request's question asked once)."""
        key = f"job:{job.id}:result"
        if job.status == "opened":
            approval = job.approval
            text = (
                f"✅ {job.message}\nBranch {job.branch} · validated · "
                f"{job.rounds} repair round(s) · Aider ${float(job.cost or 0):.4f}"
            )
            if approval is None:
                view = Choice("view", "View PR", job.pr_url or "")
                question = await self._ask(
                    job.conversation, "mechanic",
                    Reply(text, (Choice("deploy", "Deploy"), Choice("abort", "Abort"), view),
                          question=f"pr:{job.id}"),
                    requested_by=job.requested_by,
                )  # fmt: skip
                approval = question.id
                async with self.pool.connection() as conn:
                    await conn.execute(
                        "UPDATE jobs SET approval = %s WHERE id = %s", (approval, job.id)
                    )
            async with self.pool.connection() as conn:
                await outbox.put(conn, job.conversation, text, key=key, approval=approval)
                await self._told(conn, job.id)
            return
        if job.status == "question":
            text = (
                f"❓ {job.message}\n(Answer in Mechanic mode, or with /mechanic <answer>: "
                f"request {job.id} continues with it.)"
            )
        elif job.status == "aborted":
            text = job.message or f"⏹ Job {job.id} aborted."
        else:
            text = f"✗ Job {job.id} {job.status}: {job.message}"
        async with self.pool.connection() as conn:
            await outbox.put(conn, job.conversation, text, key=key)
            await self._told(conn, job.id)

    @staticmethod
    async def _told(conn: AsyncConnection[Any], job_id: str) -> None:
        await conn.execute(
            "UPDATE jobs SET told_at = coalesce(told_at, now()) WHERE id = %s", (job_id,)
        )

    # --- plumbing ------------------------------------------------------------------------

    def _forge(self) -> Any:
        from app import mechanic_jobs

        return mechanic_jobs.forge(self.settings, self.pool)

    @staticmethod
    async def _get(conn: AsyncConnection[Any], job_id: str) -> Job | None:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = %s", (job_id,))
        row = await cur.fetchone()
        return None if row is None else Job(**row)


def _one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
