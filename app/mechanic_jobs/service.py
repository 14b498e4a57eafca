"""What the chat asks of the Mechanic: the "mechanic" capability of the built-in agents."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from app import audit, outbox
from app.costs import quote
from app.costs.books import Costs
from app.costs.quote import Quote
from app.mechanic_jobs import progress, records
from app.mechanic_jobs.records import Job
from app.mechanic_jobs.runner import Ask, JobRunner
from app.memory import traces
from app.orchestrator import pull_questions
from app.settings import Settings
from mechanic import redaction

if TYPE_CHECKING:
    from app.memory.service import Memory

Defer = Callable[[AsyncConnection[Any], str], Awaitable[None]]


class MechanicJobs:
    def __init__(
        self, settings: Settings, pool: AsyncConnectionPool, *, defer: Defer | None, ask: Ask,
        memory: Memory | None = None,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.pool = pool
        self._defer = defer
        self.memory = memory
        self.runner = JobRunner(settings, pool, ask=ask, memory=memory)
        self._secrets = settings.secrets()  # read once: a key file is not read per request

    def without_secrets(self, request: str) -> tuple[str, list[str]]:
        """The request with any secret cut out, and the kinds cut."""
        clean, found = redaction.cut(request, self._secrets)
        return clean, [s.kind for s in found]

    @property
    def model_configured(self) -> bool:
        return self.settings.llm_api_key is not None

    async def quote(self) -> Quote | None:
        """The estimate to show before a job runs ("≈ $0.12, up to 5 model calls"), or None
        when none is asked for: no PERSAIS_QUOTE_ABOVE_USD, no price, or an estimate under it."""
        costs = Costs.of(self.settings, self.pool)
        return await quote.needed(costs, self.settings.quote_above_usd)

    @property
    def nowhere_to_commit(self) -> str | None:
        """Why no job can run here (no checkout and no PERSAIS_HOME_REPO), or None."""
        from app.mechanic_jobs import home_repository

        return home_repository.missing(self.settings)

    async def run(self, job_id: str) -> None:
        """The queue's task body (in a worker)."""
        await self.runner.run(job_id)

    async def start(
        self,
        *,
        conversation: str,
        user: str,
        request: str,
        plan: dict[str, Any] | None = None,
        hold: bool = False,
        fix_pr: int | None = None,
    ) -> str:
        """Record a job and queue it (or, with `hold`, keep it until `confirm`). A request
        that answers the Mechanic's clarifying question continues the request it asked about.
        A secret pasted into the request is cut out first: the request goes into prompts,
        the pull request, traces and the audit log, and a secret belongs in configuration."""
        job_id = secrets.token_hex(4)
        request, cut = self.without_secrets(request)
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT id, request, message, plan, requested_by FROM jobs WHERE conversation = %s"
                " AND status = 'question' ORDER BY created_at DESC LIMIT 1 FOR UPDATE",
                (conversation,),
            )
            asked = await cur.fetchone()
            confirmed = None
            if asked is not None and plan is None and fix_pr is None:
                await conn.execute("UPDATE jobs SET status = 'answered' WHERE id = %s", (asked[0],))
                if asked[4] == user:
                    confirmed = _said_yes_to(asked[3], request)
                request = f"{asked[1]}\n\nI asked: {asked[2]}\nThe answer: {request}"
            await conn.execute(
                "INSERT INTO jobs (id, conversation, requested_by, request, status,"
                " template_only, given_plan, kind, target_pr)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (job_id, conversation, user, request, "proposed" if hold else "queued",
                 plan is not None, Jsonb(given) if (given := plan or confirmed) else None,
                 "fix" if fix_pr is not None else "create", fix_pr),
            )  # fmt: skip
            await audit.record(
                conn, actor=user, action="mechanic.requested", subject=f"job:{job_id}",
                detail={"request": request[:500], "template_only": plan is not None,
                        "secrets_cut": cut or None,
                        "others_confirmed": confirmed["also_changes"] if confirmed else None},
            )  # fmt: skip
            if not hold:
                await self._queue(conn, job_id, conversation, request)
        return job_id

    async def confirm(self, job_id: str) -> bool:
        """Queue a job held by `start(hold=True)`; False if it is no longer waiting."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE jobs SET status = 'queued', updated_at = now()"
                " WHERE id = %s AND status = 'proposed' RETURNING conversation, request",
                (job_id,),
            )
            row = await cur.fetchone()
            if row is None:
                return False
            await self._queue(conn, job_id, *row)
        return True

    async def decline(self, job_id: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE jobs SET status = 'failed', message = 'declined', updated_at = now()"
                " WHERE id = %s AND status = 'proposed'",
                (job_id,),
            )

    async def _queue(
        self, conn: AsyncConnection[Any], job_id: str, conversation: str, request: str
    ) -> None:
        if self._defer is None:
            raise RuntimeError("this process has no job queue")
        await self._defer(conn, job_id)
        await outbox.put(
            conn, conversation, progress.header(job_id, request) + "\n⏳ queued",
            key=progress.key(job_id),
        )  # fmt: skip
        await progress.record(conn, job_id, "queued", "queued")

    async def abort(self, conversation: str, user: str, *, admin: bool, reason: str = "") -> str:
        """`/abort [reason]`: stop this conversation's latest job, or withdraw its pull
        request. A reason becomes a lesson for the files the job touched."""
        async with self.pool.connection() as conn:
            job = await records.latest_abortable(conn, conversation)
            if job is None:
                return "No Mechanic job is running here."
            if job.requested_by != user and not admin:
                await audit.record(conn, actor=user, action="mechanic.abort_refused",
                                   subject=f"job:{job.id}")  # fmt: skip
                return f"Only the person who asked for job {job.id}, or an admin, may abort it."
            if job.status != "opened":
                await conn.execute(
                    "UPDATE jobs SET abort_requested_at = now(), abort_requested_by = %s"
                    " WHERE id = %s AND abort_requested_at IS NULL",
                    (user, job.id),
                )
                await audit.record(conn, actor=user, action="mechanic.abort",
                                   subject=f"job:{job.id}")  # fmt: skip
        said = (
            await self.withdraw(job.id, by=user) if job.status == "opened"
            else f"Stopping job {job.id}…"
        )  # fmt: skip
        if reason.strip() and self.memory is not None:
            lesson = await self.memory.job_ended_badly(
                job.id, how="abort", by=user, reason=reason.strip()
            )
            if lesson is not None:
                where = ", ".join(lesson.paths) or "everywhere"
                said += f"\nNoted as lesson #{lesson.id} ({where})."
        return said

    async def withdraw(self, job_id: str, *, by: str) -> str:
        """Abort a job whose pull request is open: close it and delete its branch."""
        from app.mechanic_jobs import composed

        job = await self.job(job_id)
        if job is None or job.status != "opened":
            state = job.status if job else "unknown"
            return f"Job {job_id} has no open pull request to abort ({state})."
        forge = composed.forge(self.settings, self.pool)
        await forge.withdraw(job_id=job_id, branch=job.branch or "")
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
            if job.pr_number is not None:  # its questions, in any chat, say it was aborted
                await pull_questions.close(conn, job.pr_number, "aborted", by)
            await audit.record(conn, actor=by, action="mechanic.withdrawn", subject=f"job:{job_id}",
                               detail={"pr": job.pr_number, "branch": job.branch})  # fmt: skip
            await traces.aborted(conn, job_id)
        return text

    async def job(self, job_id: str) -> Job | None:
        async with self.pool.connection() as conn:
            return await records.get(conn, job_id)

    async def active_in(self, conversation: str) -> list[str]:
        """Jobs of this conversation still running, or finished but not yet told."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id FROM jobs WHERE conversation = %s AND (status IN ('queued', 'running')"
                " OR (attempts > 0 AND told_at IS NULL AND status <> 'answered'))",
                (conversation,),
            )
            return [row[0] for row in await cur.fetchall()]


def _said_yes_to(asked: dict[str, Any] | None, answer: str) -> dict[str, Any] | None:
    """The plan the answer says yes to, when the question was the one about the other agents
    it edits or removes (`Plan.confirmation`); then the job builds it without planning again."""
    if not asked or not asked.get("also_changes"):
        return None
    return asked if answer.strip().lower().rstrip(".!") in ("yes", "y") else None
