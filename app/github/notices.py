"""GitHub news in the Telegram admin chat: a new pull request, a review posted, a merge.

Each comes with [View PR]; a Mechanic pull request (its head branch is a job's branch on the
home repository) also gets [Deploy], asked as the Mechanic's own `pr:<job>` question so the
press goes where the job's own buttons go, and says what the release would add to or widen
in the agents' grants. Written to the outbox (the process serving
Telegram shows it), once per delivery.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from app import outbox
from app.agents.base import Choice, Reply
from app.deploy import granting
from app.github.once import first_time
from app.orchestrator import pull_questions
from app.orchestrator.orchestrator import Orchestrator
from app.review.reviewer import Outcome, ReviewRequest
from app.settings import Settings
from mechanic.workspace import job_of


class ChatNotices:
    def __init__(
        self,
        settings: Settings,
        pool: AsyncConnectionPool,
        orchestrator: Callable[[], Awaitable[Orchestrator]],
    ) -> None:
        self.settings = settings
        self.pool = pool
        self._orchestrator = orchestrator
        chat = settings.admin_chat()
        self.conversation = f"tg:{chat}" if chat is not None else None

    async def pull_request(
        self, action: str, pull: dict[str, Any], repository: str, key: str, sender: str = "?"
    ) -> None:
        """`sender`: who acted on GitHub; "" for the App itself (a Deploy's merge: the
        deploy closes the pull request's questions when it is done, saying "deployed")."""
        if action == "closed" and repository == self.settings.home_repo and sender:
            # Its open questions ([Deploy] in any chat) close, saying what happened.
            what = "merged" if pull.get("merged") else "closed"
            async with self.pool.connection() as conn:
                await pull_questions.close(conn, int(pull["number"]), what, f"github:{sender}")
        if action == "opened":
            head = "🆕 New pull request"
        elif action == "closed" and pull.get("merged"):
            head = "🔀 Merged"
        else:
            return
        who = (pull.get("user") or {}).get("login", "?")
        text = f"{head} {repository}#{pull['number']}: {pull.get('title', '')}\nby {who}"
        deploy = action == "opened"
        await self._say(text, pull, repository, key, deploy=deploy)

    async def review(self, request: ReviewRequest, outcome: Outcome, pull: dict[str, Any]) -> None:
        icon = {"success": "✅", "neutral": "⚠️", "failure": "❌"}.get(outcome.conclusion or "", "")
        text = (
            f"{icon} Reviewed {request.repository}#{request.number} at "
            f"{request.head_sha[:7]}: {outcome.conclusion}, {outcome.comments} inline comment(s)"
        )
        await self._say(text, pull, request.repository, f"review:{request.delivery}", deploy=False)

    async def _say(
        self, text: str, pull: dict[str, Any], repository: str, key: str, *, deploy: bool
    ) -> None:
        if self.conversation is None:
            return
        url = str(pull.get("html_url") or "")
        job = await self._mechanic_job(pull, repository) if deploy else None
        if not await first_time(self.pool, f"chat:{key}"):
            return  # said already (a retried delivery)
        if job is None:
            async with self.pool.connection() as conn:
                await outbox.put(conn, self.conversation, text, links=[("View PR", url)])
            return
        from app.mechanic_jobs import composed  # the forge: composed here, as the runner does

        forge = composed.forge(self.settings, self.pool)
        grants = await granting.card_of_pull(self.pool, self.settings, forge, int(pull["number"]))
        orchestrator = await self._orchestrator()
        text = f"{text}\nMechanic job {job}.\n" + "\n".join(grants)
        async with pull_questions.asking(self.pool, self.conversation, job) as asked:
            if asked is not None:  # the job's own result asked it in this chat: one [Deploy]
                async with self.pool.connection() as conn:
                    await outbox.put(conn, self.conversation, text, links=[("View PR", url)])
                return
            question = await orchestrator.ask(
                self.conversation, "mechanic",
                Reply(text, (Choice("deploy", "Deploy"), Choice("view", "View PR", url)),
                      question=f"pr:{job}"),
                requested_by="persais",
            )  # fmt: skip
            async with self.pool.connection() as conn:
                await outbox.put(conn, self.conversation, question.prompt, approval=question.id)

    async def _mechanic_job(self, pull: dict[str, Any], repository: str) -> str | None:
        if repository != self.settings.home_repo:
            return None
        branch = str(pull["head"]["ref"])
        async with self.pool.connection() as conn:
            # GitHub may tell of the pull request before the job has recorded its branch and
            # number: the branch names the job.
            cur = await conn.execute(
                "SELECT id FROM jobs WHERE id = %s OR (branch = %s AND pr_number = %s)"
                " ORDER BY created_at DESC LIMIT 1",
                (job_of(branch) or "", branch, pull["number"]),
            )
            row = await cur.fetchone()
        return str(row[0]) if row else None
