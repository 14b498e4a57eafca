"""The chat side of deploys: who may ask for a deploy, rollback or revert, and queueing it
for a worker.

[Deploy] under a Mechanic pull request, `/deploy <pr>`, and the [Roll back] / [Open revert
PR] presses only check who asks and queue the work; a worker runs it (`app.deploy.deploying`,
`app.deploy.rollbacks`). A release that adds or widens what an agent is granted
(`app.deploy.granting`) needs an admin: whoever asked hears so at once, and the worker checks
again when it runs.
"""

from __future__ import annotations

import logging

from app import audit
from app.agents.base import Choice, Reply
from app.deploy import granting, requests
from app.deploy.context import Context
from app.worker.queue import DEPLOY_TASK
from mechanic.workspace import GitError

log = logging.getLogger(__name__)


class Asking:
    def __init__(self, context: Context) -> None:
        self.context = context

    async def decided(self, agent: str, question: str) -> tuple[str, str, bool]:
        """Where, by whom, and whether by an admin, `question` was just answered: an agent's
        `on_choice` is told the choice only, and the ledger wants who pressed."""
        async with self.context.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT conversation, decided_by, decided_by_admin FROM approvals"
                " WHERE agent = %s AND question = %s AND status = 'decided'"
                " ORDER BY decided_at DESC LIMIT 1",
                (agent, question),
            )
            row = await cur.fetchone()
        if row is None:
            return "", "unknown", False
        return str(row[0]), str(row[1] or "unknown"), bool(row[2])

    async def pressed(self, job_id: str) -> Reply | str:
        """[Deploy] under a Mechanic pull request (the approval already checked who). A
        release that widens a grant, pressed by someone who is not an admin, is refused at
        once, and [Deploy] is offered again for an admin."""
        async with self.context.pool.connection() as conn:
            cur = await conn.execute("SELECT pr_number, pr_url FROM jobs WHERE id = %s", (job_id,))
            row = await cur.fetchone()
        if row is None or row[0] is None:
            return f"Job {job_id} has no pull request to deploy."
        number = int(row[0])
        conversation, by, admin = await self.decided("mechanic", f"pr:{job_id}")
        refused = await self._grants_refused(number, by, admin)
        if refused is None:
            return await self.queue("deploy", number, by, conversation, admin=admin)
        view = (Choice("view", "View PR", str(row[1])),) if row[1] else ()
        return Reply(
            f"🚫 Not deployed: {refused}.", (Choice("deploy", "Deploy"), *view),
            question=f"pr:{job_id}",
        )  # fmt: skip

    async def request(self, number: int, *, by: str, conversation: str, admin: bool) -> str:
        """`/deploy <pr>`: admins, or whoever asked for the job that opened it."""
        job = await self.context.job_for(number)
        if job is None:
            why = "not a Mechanic PR"
            answer = (
                f"Pull request #{number} was not built and validated by the Mechanic here, "
                "so I will not hot-deploy it. Merge it on the forge; the deploy workflow "
                "ships it."
            )
        elif not admin and job[1] != by:
            why = "not allowed"
            answer = f"Only the person who asked for job {job[0]}, or an admin, may deploy it."
        else:
            refused = await self._grants_refused(number, by, admin)
            if refused is None:
                return await self.queue("deploy", number, by, conversation, admin=admin)
            return f"🚫 Not deployed: {refused}."
        async with self.context.pool.connection() as conn:
            await audit.record(conn, actor=by, action="deploy.refused", subject=f"pr:{number}",
                               detail={"why": why})  # fmt: skip
        return answer

    async def _grants_refused(self, number: int, by: str, admin: bool) -> str | None:
        """Why `by` may not deploy pull request `number` (None: they may): what it would add
        or widen against the release in service needs an admin. Read at the request, so
        the answer comes at once; the worker reads it again when it runs."""
        if admin:
            return None
        context = self.context
        try:
            found = await granting.of_pull(context.pool, context.settings, context.forge(), number)
        except (GitError, LookupError) as exc:  # the run checks again, and says why
            log.warning("could not read the grants of pull request #%s: %s", number, exc)
            return None
        if not found:
            return None
        await context.refused_grants(number, by, found)
        return granting.refusal(found)

    async def chose(self, question: str, choice: str) -> str:
        """A [Roll back] / [Open revert PR] press (asked by the rollback agent)."""
        kind, _, ident = question.partition(":")
        if choice in ("cancel", "no") or not ident.isdigit():
            return "Cancelled; nothing changed."
        conversation, by, _ = await self.decided("rollback", question)
        action = "rollback" if kind == "rollback" else "revert"
        return await self.queue(action, int(ident), by, conversation)

    async def queue(
        self, action: str, subject: int, by: str, conversation: str, *, admin: bool = False
    ) -> str:
        defer = self.context.defer
        if defer is None:
            return "This process has no worker queue; deploys run in `persais serve` or `chat`."
        await requests.queue(self.context.pool, defer, action, subject, by=by,
                             conversation=conversation, admin=admin)  # fmt: skip
        return {
            "deploy": f"🚀 Deploying pull request #{subject}…",
            "rollback": "↩ Rolling back…",
            "revert": "Opening a revert pull request…",
        }[action]

    async def active_in(self, conversation: str) -> list[str]:
        """Deploys, rollbacks and reverts asked for here and not finished."""
        async with self.context.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT args->>'action', args->>'subject' FROM procrastinate_jobs"
                " WHERE task_name = %s AND status IN ('todo', 'doing')"
                " AND args->>'conversation' = %s ORDER BY id",
                (DEPLOY_TASK, conversation),
            )
            return [f"{action} {subject}" for action, subject in await cur.fetchall()]
