"""A queued Mechanic job, run by a worker: plan once, build, watch for /abort, tell.

`/abort` sets `abort_requested_at`; the run's heartbeat (twice a second) sees it and
cancels the build: Aider's process group is killed, the worktree removed, the branch
deleted and the pull request, if one was opened, closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from app import audit, outbox
from app.agents.base import Choice, Reply
from app.costs import ledger
from app.costs.books import Costs
from app.mechanic_jobs import records
from app.mechanic_jobs.progress import ChatProgress
from app.mechanic_jobs.records import Job
from app.orchestrator import pull_questions
from app.orchestrator.approvals import Approval
from app.settings import Settings
from mechanic.metering import BudgetReached

if TYPE_CHECKING:
    from app.memory.service import Memory

log = logging.getLogger(__name__)
MAX_RUNS = 3
HEARTBEAT_SECONDS = 0.5

Ask = Callable[..., Awaitable[Approval]]  # Orchestrator.ask


class JobRunner:
    def __init__(
        self, settings: Settings, pool: AsyncConnectionPool, *, ask: Ask,
        memory: Memory | None = None,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.pool = pool
        self._ask = ask
        self.memory = memory

    async def run(self, job_id: str) -> None:
        from app.mechanic_jobs import composed
        from mechanic.job import JobOutcome

        async with self.pool.connection() as conn:
            job = await records.get(conn, job_id)
            if job is None:
                log.warning("mechanic job %s is not in the jobs table", job_id)
                return
            if job.status not in records.ACTIVE:  # finished before its worker could say so
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
        progress = ChatProgress(self.pool, job.id, job.conversation, job.request)
        if runs > 1:
            await progress.note(f"resumed after an interruption (run {runs} of {MAX_RUNS})")
        if runs > MAX_RUNS:
            outcome = JobOutcome("failed", f"The job was interrupted {runs - 1} times; I gave up.")
        elif job.abort_requested_at is not None:
            outcome = JobOutcome("aborted", "")
        else:
            outcome = await self._execute(job, progress)
        await self._remember(job, outcome)
        if outcome.status == "aborted":
            await self._record_abort(job, outcome.cost)
        else:
            await composed.record_outcome(self.pool, job_id, outcome)
            async with self.pool.connection() as conn:
                await audit.record(
                    conn, actor="mechanic", action=f"mechanic.{outcome.status}",
                    subject=f"job:{job_id}",
                    detail={"rounds": outcome.rounds, "cost": outcome.cost,
                            "message": outcome.message[:500]},
                )  # fmt: skip
        await progress.finish(outcome.status in ("opened", "question"))
        async with self.pool.connection() as conn:
            finished = await records.get(conn, job_id)
        assert finished is not None
        await self._announce(finished)

    async def _execute(self, job: Job, progress: ChatProgress) -> Any:
        from app.mechanic_jobs import composed
        from mechanic.job import JobOutcome

        try:
            deps = composed.job_deps(
                self.settings, self.pool, progress, use_aider=not job.template_only
            )
        except composed.MechanicUnavailable as exc:
            return JobOutcome("failed", f"The Mechanic cannot run here: {exc}")
        # The job's account: every model call inside `work` (a task copies the context it is
        # created in) is recorded against the job, and refused once a budget is spent.
        async with Costs.of(self.settings, self.pool).account("job", job.id) as account:
            work = asyncio.create_task(self._plan_and_build(job, deps))
            aborted = asyncio.Event()
            watch = asyncio.create_task(self._watch(job.id, work, aborted))
            try:
                return await work  # a worker shutting down cancels us, and with us `work`
            except asyncio.CancelledError:
                if not aborted.is_set():
                    raise  # the queue runs the job again later: it resumes
                return JobOutcome("aborted", "")
            except BudgetReached as exc:  # before a model call or an Aider round
                await progress.note(f"stopped: {exc}")
                return await self._stopped(job, f"{exc}; spent: {account.describe()}")
            except Exception as exc:  # a broken plan, git, the forge: the job fails, told plainly
                log.exception("mechanic job %s failed", job.id)
                return JobOutcome("failed", f"The job stopped on an error: {str(exc)[:500]}")
            finally:
                watch.cancel()

    async def _stopped(self, job: Job, why: str) -> Any:
        """A job its budget stopped: failed, with the plan it kept (its worktree is gone, and
        nothing was published)."""
        from mechanic.job import JobOutcome
        from mechanic.plan import Plan

        async with self.pool.connection() as conn:
            now = await records.get(conn, job.id)
        kept = now.plan if now is not None else None
        return JobOutcome(
            "failed", f"Stopped before the next model call: {why}. Nothing was published.",
            plan=Plan.model_validate(kept) if kept else None,
        )  # fmt: skip

    async def _plan_and_build(self, job: Job, deps: Any) -> Any:
        """Plan once: the plan is kept with the job, so a resumed run builds the same thing
        (and does not ask the model again)."""
        from mechanic.job import JobOutcome, run_fix, run_job, with_conventions
        from mechanic.plan import Clarification, Plan, make_plan

        if job.kind == "fix" and job.target_pr is not None:
            deps = replace(deps, guidance=await self._guidance(job, None, deps.guidance))
            return await run_fix(job.id, job.request, deps, job.target_pr)
        known = job.given_plan or job.plan
        # A given plan is the person's: their own (template alone) or one they said yes to
        # (the other agents it changes); a kept plan is asked about again.
        confirmed = job.given_plan is not None
        if known is not None:
            plan = Plan.model_validate(known)
        else:
            await deps.progress("plan")
            deps = await with_conventions(deps)  # the home repository's AGENTS.md or the like
            advice = await self._guidance(job, None, deps.guidance)
            planned = await make_plan(job.request, deps.model, advice)
            if isinstance(planned, Clarification):
                return JobOutcome("question", planned.question)
            plan = planned
            async with self.pool.connection() as conn:
                await conn.execute(
                    "UPDATE jobs SET plan = %s WHERE id = %s", (Jsonb(plan.model_dump()), job.id)
                )
        deps = replace(deps, guidance=await self._guidance(job, plan.files, deps.guidance))
        return await run_job(job.id, job.request, deps, plan=plan, others_confirmed=confirmed)

    async def _guidance(self, job: Job, paths: list[str] | None, known: Any) -> Any:
        """What memory says about the job, with the conventions `known` already (run_job and
        run_fix read them when they are still None)."""
        from mechanic.guidance import Guidance

        found = (
            Guidance()
            if self.memory is None
            else await self.memory.guidance(job.request, paths, job_id=job.id)
        )
        return replace(found, conventions=known.conventions)

    async def _remember(self, job: Job, outcome: Any) -> None:
        """The job's trace, for the next job like it (a question is not an ending)."""
        if self.memory is None or outcome.status == "question":
            return
        from app.memory.service import trace_of

        try:
            await self.memory.job_finished(trace_of(job, outcome))
        except Exception:  # memory is advice: the job's ending is told all the same
            log.exception("could not store the trace of job %s", job.id)

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

    async def _record_abort(self, job: Job, cost: float) -> None:
        from app.mechanic_jobs import composed

        # The worktree is gone (run_job's cleanup ran as the cancel went through it); a pull
        # request opened just before the abort landed is closed here.
        await composed.forge(self.settings, self.pool).withdraw(job_id=job.id, branch="")
        async with self.pool.connection() as conn:
            now = await records.get(conn, job.id)
            who = (now.abort_requested_by if now else None) or "request"
            text = f"⏹ Job {job.id} aborted by {who}: Aider stopped, worktree and branch removed."
            await conn.execute(
                "UPDATE jobs SET status = 'aborted', message = %s, cost = %s, updated_at = now()"
                " WHERE id = %s",
                (text, cost, job.id),
            )
            await audit.record(conn, actor="mechanic", action="mechanic.aborted",
                               subject=f"job:{job.id}")  # fmt: skip

    async def _announce(self, job: Job) -> None:
        """Tell the conversation how the job ended; safe to repeat (keyed outbox rows, and
        the pull request's question asked once)."""
        approval = None
        if job.status == "opened":
            made = (
                "from the template alone"
                if job.template_only
                else f"{job.rounds} repair round(s) · Aider ${float(job.cost or 0):.4f}"
            )
            text = f"✅ {job.message}\nBranch {job.branch} · validated · {made}"
            text += f"\nSpent: {await self._spent(job)}"
            text += "".join(f"\n{line}" for line in await self._grants(job))
            approval = job.approval or await self._ask_about_pull_request(job, text)
        elif job.status == "question":
            text = (
                f"❓ {job.message}\n(Answer in Mechanic mode, or with /mechanic <answer>: "
                f"request {job.id} continues with it.)"
            )
        elif job.status == "aborted":
            text = job.message or f"⏹ Job {job.id} aborted."
        else:
            text = f"✗ Job {job.id} {job.status}: {job.message}"
        async with self.pool.connection() as conn:
            await outbox.put(
                conn, job.conversation, text, key=f"job:{job.id}:result", approval=approval
            )
            await records.mark_told(conn, job.id)

    async def _spent(self, job: Job) -> str:
        async with self.pool.connection() as conn:
            return (await ledger.spent_on(conn, "job", job.id)).describe()

    async def _grants(self, job: Job) -> list[str]:
        """What deploying the pull request would add to or widen in the agents' grants,
        against the release in service (the Deploy card says so before anyone presses)."""
        from app.deploy import granting
        from app.mechanic_jobs import composed

        if job.pr_number is None:
            return []
        forge = composed.forge(self.settings, self.pool)
        return await granting.card_of_pull(self.pool, self.settings, forge, job.pr_number)

    async def _ask_about_pull_request(self, job: Job, text: str) -> str | None:
        """The job's [Deploy] question; None when the admin notice already asked it in this
        chat (the job's conversation is the admin chat): one [Deploy] per chat."""
        view = Choice("view", "View PR", job.pr_url or "")
        # A fix went onto someone's pull request: aborting must not close it.
        abort = () if job.kind == "fix" else (Choice("abort", "Abort"),)
        choices = (Choice("deploy", "Deploy"), *abort, view)
        async with pull_questions.asking(self.pool, job.conversation, job.id) as asked:
            if asked is not None:
                return None
            question = await self._ask(
                job.conversation, "mechanic",
                Reply(text, choices,
                      question=f"pr:{job.id}"),
                requested_by=job.requested_by,
            )  # fmt: skip
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE jobs SET approval = %s WHERE id = %s", (question.id, job.id))
        return question.id
