"""Deploys, rollbacks and revert pull requests: what [Deploy], `/deploy`, `/rollback` and
`/releases` do (which release this process runs is `app/deploy/here.py`).

`Deployments` is the one face the rest of Persais sees (the agents' "deploy" capability,
the worker's deploy task, `persais chat`); the work is in its parts:

- `asking.py` — the chat side: who may ask, and queueing the work;
- `deploying.py` — a worker's deploy: checks, merge, release, load, verify, go live;
- `rollbacks.py` — `/rollback` and the revert of the rolled-back merge;
- `machines.py` — moving Fly machines, and handing a run over when this machine moves;
- `telling.py` — what a request says in its conversation, and `/releases`;
- `context.py` — the collaborators they share;
- `requests.py` — queueing a request, the same for the chat and the console;
- `changes.py` — what a release changed (agents added, changed, removed), for the console.

A worker runs the work one request at a time (a procrastinate lock and a Postgres advisory
lock), and says how it went in the conversation through the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from psycopg_pool import AsyncConnectionPool

from app.agents.base import Reply
from app.agents.registry import Registry
from app.deploy import telling
from app.deploy.asking import Asking
from app.deploy.context import Ask, Context, Defer, Refused
from app.deploy.deploying import Deploying
from app.deploy.here import ThisProcess
from app.deploy.rollbacks import Rollbacks
from app.deploy.telling import Say
from app.settings import Settings

if TYPE_CHECKING:
    from app.memory.service import Memory

log = logging.getLogger(__name__)


class Deployments:
    def __init__(
        self,
        settings: Settings,
        pool: AsyncConnectionPool,
        registry: Registry,
        *,
        defer: Defer | None,
        ask: Ask,
        build_commit: str | None,
        memory: Memory | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.here = ThisProcess(settings, pool, registry, self.forge, build_commit)
        context = Context(
            settings, pool, registry, self.here, defer=defer, ask=ask,
            build_commit=build_commit, memory=memory, forge=self.forge,
        )  # fmt: skip
        self._asking = Asking(context)
        self._deploying = Deploying(context)
        self._rollbacks = Rollbacks(context)

    def forge(self) -> Any:
        from app.mechanic_jobs import composed

        return composed.forge(self.settings, self.pool)

    # -- the chat side ---------------------------------------------------------------------

    async def pressed(self, job_id: str) -> Reply | str:
        """[Deploy] under a Mechanic pull request."""
        return await self._asking.pressed(job_id)

    async def request(self, number: int, *, by: str, conversation: str, admin: bool) -> str:
        """`/deploy <pr>`."""
        return await self._asking.request(number, by=by, conversation=conversation, admin=admin)

    async def chose(self, question: str, choice: str) -> str:
        """A [Roll back] / [Open revert PR] press."""
        return await self._asking.chose(question, choice)

    async def active_in(self, conversation: str) -> list[str]:
        """Deploys, rollbacks and reverts asked for here and not finished."""
        return await self._asking.active_in(conversation)

    async def offer_rollback(self, by: str, reason: str = "") -> Reply:
        """`/rollback [reason]`: ask to confirm."""
        return await self._rollbacks.offer(by, reason)

    async def describe(self, limit: int = 10) -> str:
        """`/releases`."""
        return await telling.releases(self.pool, self.here, limit)

    # -- the worker side -------------------------------------------------------------------

    async def run(
        self, action: str, subject: int, by: str, conversation: str, rid: str, handoffs: int = 0,
        admin: bool = False,
    ) -> None:  # fmt: skip
        """The queue's task body; `handoffs` counts the runs queued by a replaced process,
        `admin`: whether `by` asked as an admin (a widening release needs one)."""
        say = Say(self.pool, conversation, rid, handoffs, admin)
        try:
            async with self._exclusive():
                if action == "deploy":
                    await self._deploying.deploy(subject, by, say)
                elif action == "rollback":
                    await self._rollbacks.rollback(subject, by, say)
                elif action == "revert":
                    await self._rollbacks.revert(subject, by, say)
                else:
                    raise ValueError(f"unknown deploy action {action!r}")
        except Refused as exc:
            await say.result(f"🚫 {exc}")
        except Exception as exc:  # told plainly; the queue's retry runs it again from the top
            log.exception("%s %s failed", action, subject)
            await say.result(f"✗ The {action} stopped on an error: {str(exc)[:400]}")
            raise

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        async with self.pool.connection() as conn:
            await conn.execute("SELECT pg_advisory_lock(hashtext('persais:deploy'))")
            try:
                yield
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtext('persais:deploy'))")
