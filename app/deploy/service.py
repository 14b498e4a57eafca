"""Deploys, rollbacks and revert pull requests: what [Deploy], `/deploy`, `/rollback` and
`/releases` do (which release this process runs is `app/deploy/here.py`).

The chat side only checks who asks and queues the work; a worker runs it, one at a time
(a procrastinate lock and a Postgres advisory lock), and says how it went in the
conversation through the outbox. Every step is safe to run again: a retried deploy finds
the pull request merged, or its release cut, and carries on from there.

Deploy: refuse unless the pull request is open, its head is the head the Mechanic
validated and its checks are green → squash-merge through the forge → cut a release at the
merge commit → materialise `dynamic/` at it → load it beside the agents in service and
verify it (the changed agents loaded, answering their generated tests' smoke messages) →
local: put it in service in one assignment; Fly: move the machines → record it live. A
release that fails verification never serves: the previous one stays, and the chat is told
why. A change outside `dynamic/` and `tests/dynamic/` is merged but not hot-deployed.

Grants: a release that adds or widens what an agent is granted (`app.deploy.granting`)
needs an admin's press. Whoever asked for the job hears so at once, and the worker checks
again against the release in service when it runs (before the merge, and on the merged
manifests before the release is cut). A release records its grants in the ledger.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

from psycopg_pool import AsyncConnectionPool

from app import audit, outbox
from app.agents import grants
from app.agents.base import Choice, Reply
from app.agents.grants import Change
from app.agents.registry import Registry
from app.deploy import files, granting, ledger, reverts, verify
from app.deploy.fly import Handoff
from app.deploy.here import Running, ThisProcess
from app.deploy.ledger import Release
from app.orchestrator import pull_questions
from app.orchestrator.approvals import Approval
from app.settings import Settings
from app.worker.queue import DEPLOY_TASK
from mechanic.forge import MergeRefused
from mechanic.workspace import GitError

if TYPE_CHECKING:
    from app.memory.service import Memory

log = logging.getLogger(__name__)
HANDOFF_SECONDS = 3.0  # a replaced process stops taking jobs well within this

Defer = Callable[..., Awaitable[None]]  # DeliveryQueue.defer_deploy
Ask = Callable[..., Awaitable[Approval]]  # Orchestrator.ask


class Refused(Exception):
    """A deploy that must not happen; the message says why, for the chat."""


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
        self.memory = memory
        self.pool = pool
        self.registry = registry
        self._defer = defer
        self._ask = ask
        self.build_commit = build_commit
        self.repository = settings.home_repo or "persais"
        self.here = ThisProcess(settings, pool, registry, self.forge, build_commit)

    def forge(self) -> Any:
        from app import mechanic_jobs

        return mechanic_jobs.forge(self.settings, self.pool)

    # -- the chat side: who may, and queue it -------------------------------------------------

    async def _decided(self, agent: str, question: str) -> tuple[str, str, bool]:
        """Where, by whom, and whether by an admin, `question` was just answered: an agent's
        `on_choice` is told the choice only, and the ledger wants who pressed."""
        async with self.pool.connection() as conn:
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
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT pr_number, pr_url FROM jobs WHERE id = %s", (job_id,))
            row = await cur.fetchone()
        if row is None or row[0] is None:
            return f"Job {job_id} has no pull request to deploy."
        number = int(row[0])
        conversation, by, admin = await self._decided("mechanic", f"pr:{job_id}")
        refused = await self._grants_refused(number, by, admin)
        if refused is None:
            return await self._queue("deploy", number, by, conversation, admin=admin)
        view = (Choice("view", "View PR", str(row[1])),) if row[1] else ()
        return Reply(
            f"🚫 Not deployed: {refused}.", (Choice("deploy", "Deploy"), *view),
            question=f"pr:{job_id}",
        )  # fmt: skip

    async def request(self, number: int, *, by: str, conversation: str, admin: bool) -> str:
        """`/deploy <pr>`: admins, or whoever asked for the job that opened it."""
        job = await self._job_for(number)
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
                return await self._queue("deploy", number, by, conversation, admin=admin)
            return f"🚫 Not deployed: {refused}."
        async with self.pool.connection() as conn:
            await audit.record(conn, actor=by, action="deploy.refused", subject=f"pr:{number}",
                               detail={"why": why})  # fmt: skip
        return answer

    async def _grants_refused(self, number: int, by: str, admin: bool) -> str | None:
        """Why `by` may not deploy pull request `number` (None: they may): what it would add
        or widen against the release in service needs an admin. Read at the request, so
        the answer comes at once; the worker reads it again when it runs."""
        if admin:
            return None
        try:
            found = await granting.of_pull(self.pool, self.settings, self.forge(), number)
        except (GitError, LookupError) as exc:  # the run checks again, and says why
            log.warning("could not read the grants of pull request #%s: %s", number, exc)
            return None
        if not found:
            return None
        await self._refused_grants(number, by, found)
        return granting.refusal(found)

    async def _refused_grants(self, number: int, by: str, found: list[Change]) -> None:
        detail = {"why": "grants", "grants": [str(c) for c in found]}
        async with self.pool.connection() as conn:
            await audit.record(
                conn, actor=by, action="deploy.refused", subject=f"pr:{number}", detail=detail
            )

    async def _queue(
        self, action: str, subject: int, by: str, conversation: str, *, admin: bool = False
    ) -> str:
        if self._defer is None:
            return "This process has no worker queue; deploys run in `persais serve` or `chat`."
        rid = secrets.token_hex(4)
        async with self.pool.connection() as conn, conn.transaction():
            await self._defer(
                conn, action=action, subject=subject, by=by, conversation=conversation, rid=rid,
                admin=admin,
            )  # fmt: skip
            await audit.record(conn, actor=by, action=f"{action}.requested",
                               subject=f"{action}:{subject}", detail={"request": rid})  # fmt: skip
        return {
            "deploy": f"🚀 Deploying pull request #{subject}…",
            "rollback": "↩ Rolling back…",
            "revert": "Opening a revert pull request…",
        }[action]

    async def active_in(self, conversation: str) -> list[str]:
        """Deploys, rollbacks and reverts asked for here and not finished."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT args->>'action', args->>'subject' FROM procrastinate_jobs"
                " WHERE task_name = %s AND status IN ('todo', 'doing')"
                " AND args->>'conversation' = %s ORDER BY id",
                (DEPLOY_TASK, conversation),
            )
            return [f"{action} {subject}" for action, subject in await cur.fetchall()]

    async def offer_rollback(self, by: str, reason: str = "") -> Reply:
        """`/rollback [reason]`: ask to confirm; the reason becomes a lesson when it is done."""
        async with self.pool.connection() as conn:
            current = await ledger.current(conn)
            target = await ledger.previous_good(conn, current) if current else None
            if current is None or target is None:
                return Reply("There is no earlier release to roll back to.")
            if reason:
                await audit.record(conn, actor=by, action="rollback.reason",
                                   subject=f"release:{current.id}",
                                   detail={"reason": reason[:500]})  # fmt: skip
        text = (
            f"In service: {_line(current)}\nPrevious: {_line(target)}\n"
            + (f"Reason: {reason[:500]}\n" if reason else "")
            + f"Roll back to release {target.id}?"
        )
        return Reply(
            text,
            (Choice("rollback", "Roll back"), Choice("cancel", "Cancel")),
            question=f"rollback:{current.id}",
        )

    async def chose(self, question: str, choice: str) -> str:
        """A [Roll back] / [Open revert PR] press (asked by the rollback agent)."""
        kind, _, ident = question.partition(":")
        if choice in ("cancel", "no") or not ident.isdigit():
            return "Cancelled; nothing changed."
        conversation, by, _ = await self._decided("rollback", question)
        action = "rollback" if kind == "rollback" else "revert"
        return await self._queue(action, int(ident), by, conversation)

    async def describe(self, limit: int = 10) -> str:
        async with self.pool.connection() as conn:
            releases = await ledger.history(conn, limit)
        if not releases:
            where = self.here.running.sha or "the image's own agents"
            return f"No releases yet: the agents come from {where[:12]}."
        lines = ["Releases (newest first):"]
        for release in releases:
            mark = "▶" if release.status == "live" else " "
            lines.append(f"{mark} {_line(release)}")
            held = grants.describe(release.granted)
            if held:
                lines.append("    grants: " + " · ".join(held))
        lines.append(self.here.where())
        return "\n".join(lines)

    # -- the worker side -------------------------------------------------------------------

    async def run(
        self, action: str, subject: int, by: str, conversation: str, rid: str, handoffs: int = 0,
        admin: bool = False,
    ) -> None:  # fmt: skip
        """The queue's task body; `handoffs` counts the runs queued by a replaced process,
        `admin`: whether `by` asked as an admin (a widening release needs one)."""
        say = _Say(self.pool, conversation, rid, handoffs, admin)
        try:
            async with self._exclusive():
                if action == "deploy":
                    await self._deploy(subject, by, say)
                elif action == "rollback":
                    await self._rollback(subject, by, say)
                elif action == "revert":
                    await self._revert(subject, by, say)
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

    async def _job_for(self, number: int) -> tuple[str, str, str | None] | None:
        """The latest Mechanic job that opened (or deployed) pull request `number`: its id,
        who asked for it, and the head it validated."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, requested_by, head_sha FROM jobs WHERE pr_number = %s"
                " AND status IN ('opened', 'deployed') ORDER BY updated_at DESC LIMIT 1",
                (number,),
            )
            row = await cur.fetchone()
        return (str(row[0]), str(row[1]), row[2]) if row else None

    async def _deploy(self, number: int, by: str, say: _Say) -> None:
        forge = self.forge()
        async with self.pool.connection() as conn:
            existing = await ledger.for_pull(conn, self.repository, number)
        if existing is not None and existing.status not in ("cut", "loading"):
            # A retried run of a request that got its answer keeps that answer.
            await say.result(f"Pull request #{number} is already {_line(existing)}.", keep=True)
            return
        try:
            pull = await forge.pull_state(number)
        except LookupError as exc:
            raise Refused(f"Not deployed: {exc}.") from None
        job = await self._job_for(number)
        job_id, validated = (job[0], job[2]) if job else (None, None)
        if existing is not None:  # a deploy interrupted after its release was cut
            await self._load(existing, say, await forge.changed_paths(existing.sha))
            return
        if pull.state == "merged" and pull.merge_sha and pull.head_sha == validated:
            merged = pull.merge_sha  # merged by an earlier run of this deploy
        else:
            await self._check(pull, validated, forge)
            await self._not_held(
                number, forge, f"refs/heads/{pull.base}", await reverts.touched_by_pull(forge, pull)
            )
            if not say.admin:  # against the release in service now, before anything merges
                found = await granting.of_pull(self.pool, self.settings, forge, number)
                await self._may_grant(number, by, found)
            await say.progress(f"🚀 Pull request #{number}: merging…")
            try:
                merged = await forge.merge(number, sha=pull.head_sha, title=_title(pull))
            except MergeRefused as exc:
                raise Refused(f"Not deployed: {exc}") from None
            async with self.pool.connection() as conn:
                await audit.record(conn, actor=by, action="deploy.merged", subject=f"pr:{number}",
                                   detail={"merge": merged, "head": pull.head_sha})  # fmt: skip
            if self.memory is not None and self.settings.home_repo is None:
                # The local forge's branch moved (GitHub says so with a push instead).
                await self.memory.request_index()
        paths = await forge.changed_paths(merged)
        outside = files.hot_deployable(paths)
        if outside:
            await self._mark_jobs(number, "merged", by)
            shown = ", ".join(outside[:5]) + (" …" if len(outside) > 5 else "")
            await say.result(
                f"✅ Pull request #{number} merged as {merged[:12]}. It changes {shown} — outside "
                "dynamic/ and tests/dynamic/ — so it is not hot-deployed: it ships through the "
                "deploy workflow (.github/workflows/fly-deploy.yml)."
            )
            return
        # A base that still held a rolled-back agent (its revert not merged before this).
        await self._not_held(number, forge, merged, files.agents_touched(paths), merged=True)
        # The release's grants are its manifests' as merged, checked against the release in
        # service at this moment (deploys and rollbacks run one at a time).
        granted = grants.of_folder((await self.here.files(merged)).agents)
        async with self.pool.connection() as conn, conn.transaction():
            current = await ledger.current(conn) or await ledger.image(
                conn, repository=self.repository, commit=self.build_commit,
                grants=grants.of_folder(self.settings.resolved_agents_dir()),
            )  # fmt: skip
            found = grants.widened(current.granted, granted)
            if not say.admin:  # a refusal writes nothing here (its audit has its own connection)
                await self._may_grant(number, by, found, merged=True)
            release = await ledger.cut(
                conn, sha=merged, repository=self.repository, pr_number=number, job_id=job_id,
                pressed_by=by, conversation=say.conversation, previous=current.id,
                grants=granted,
            )  # fmt: skip
            detail = {"sha": merged, "pr": number, "grants": [str(c) for c in found]}
            await audit.record(
                conn, actor=by, action="release.cut", subject=f"release:{release.id}", detail=detail
            )
        await self._load(release, say, paths)

    async def _not_held(
        self, number: int, forge: Any, ref: str, deploying: set[str] | frozenset[str],
        *, merged: bool = False,
    ) -> None:  # fmt: skip
        """Refuse a release that would serve a rolled-back agent again (its revert is not
        merged), unless the pull request itself touches that agent."""
        found = await reverts.held(self.pool, forge, ref, deploying=frozenset(deploying))
        if not found:
            return
        base = (await forge.pull_state(number)).base
        why = "; ".join(held.line(base) for held in found)
        async with self.pool.connection() as conn:
            await audit.record(conn, actor="persais", action="deploy.refused",
                               subject=f"pr:{number}", detail={"why": why})  # fmt: skip
        done = f"pull request #{number} is merged, but " if merged else ""
        raise Refused(f"Not deployed: {done}{why}.")

    async def _may_grant(
        self, number: int, by: str, found: list[Change], *, merged: bool = False
    ) -> None:
        """Refuse a release that adds or widens a grant (the caller is not an admin)."""
        if not found:
            return
        await self._refused_grants(number, by, found)
        if merged:
            raise Refused(
                f"Not deployed: pull request #{number} is merged, but {granting.refusal(found)} "
                f"(/deploy {number})."
            )
        raise Refused(f"Not deployed: {granting.refusal(found)}.")

    async def _check(self, pull: Any, validated: str | None, forge: Any) -> None:
        problems = []
        if pull.state != "open":
            problems.append(f"pull request #{pull.number} is {pull.state}")
        if validated is None:
            problems.append("the Mechanic has no validated head for it")
        elif pull.head_sha != validated:
            problems.append(
                f"its head {pull.head_sha[:12]} is not the head the Mechanic validated "
                f"({validated[:12]}); new commits must be validated first (/mechanic fix …)"
            )
        if pull.state == "open":
            problems += await forge.checks(pull.head_sha)
        if problems:
            async with self.pool.connection() as conn:
                await audit.record(
                    conn,
                    actor="persais",
                    action="deploy.refused",
                    subject=f"pr:{pull.number}",
                    detail={"why": problems},
                )
            raise Refused("Not deployed: " + "; ".join(problems) + ".")

    async def _load(self, release: Release, say: _Say, paths: list[str]) -> None:
        assert release.sha is not None
        async with self.pool.connection() as conn:
            previous = await ledger.get(conn, release.previous) if release.previous else None
            await ledger.event(conn, release.id, "loading", actor="persais")
        await say.progress(f"🚀 {release.label()}: loading…")
        changed = files.agents_touched(paths)
        synced = await self.here.files(release.sha)
        async with self.here.swap:
            staged = await self.registry.stage(synced.agents, release.sha)
            problems = await verify.problems(staged, self.registry.current, changed, synced)
            if self.settings.fly_configured:
                await self.registry.discard(staged)
                if not problems:
                    expect = changed & set(staged.agents)
                    try:
                        problems = await self._roll(release, previous, expect, say)
                    except Handoff as handoff:
                        by = release.pressed_by or "persais"
                        await self._hand_off(handoff, "deploy", release.pr_number or 0, by, say)
                        return
            elif problems:
                await self.registry.discard(staged)
            else:
                await self.registry.promote(staged)
            async with self.pool.connection() as conn, conn.transaction():
                if problems:
                    await ledger.event(conn, release.id, "failed", actor="persais",
                                       reason="; ".join(problems)[:2000])  # fmt: skip
                else:
                    if previous is not None:
                        await ledger.event(conn, previous.id, "superseded", actor="persais")
                    await ledger.event(conn, release.id, "live", actor=release.pressed_by)
                await audit.record(
                    conn, actor="persais", action="release.failed" if problems else "release.live",
                    subject=f"release:{release.id}", detail={"problems": problems},
                )  # fmt: skip
                live = await ledger.get(conn, release.id)
            if not problems and not self.settings.fly_configured:
                self.here.running = Running(live, release.sha, synced.agents)
        if problems:
            back = previous.label() if previous else "the previous release"
            await say.result(
                f"✗ {release.label()} failed verification, so it was rolled back: "
                + "; ".join(problems)
                + f".\n{back} stays in service; its agents still answer."
            )
            return
        await self._mark_jobs(release.pr_number or 0, "deployed", release.pressed_by or "persais")
        commands = sorted(
            f"/{staged.agents[name].manifest.command}" for name in changed if name in staged.agents
        )
        ready = f": {', '.join(commands)} answering" if commands else ""
        given = grants.widened(previous.granted if previous else {}, release.granted)
        granted = "".join(f"\n🔑 granted {change}" for change in given)
        await say.result(f"✅ {release.label()} is live{ready}.{granted}")

    async def _roll(
        self, release: Release, previous: Release | None, expect: set[str], say: _Say
    ) -> list[str]:
        from app.deploy.fly import FlyDeployer, FlyMachines, RollFailed

        assert self.settings.fly_api_token is not None
        assert self.settings.fly_app_name is not None
        machines = FlyMachines(
            self.settings.fly_api_url, self.settings.fly_api_token.get_secret_value(),
            self.settings.fly_app_name,
        )  # fmt: skip
        deployer = FlyDeployer(
            machines, ready_port=self.settings.fly_ready_port,
            own_machine=self.settings.fly_machine_id, runs=self.here.running.sha or "",
            may_hand_off=say.handoffs * HANDOFF_SECONDS < self.settings.deploy_timeout_seconds,
            deadline=self.settings.deploy_timeout_seconds,
            progress=lambda text: say.progress(f"🚀 {release.label()}: {text}"),
        )  # fmt: skip
        try:
            await deployer.roll(_on_fly(release), expect, _on_fly(previous))
        except RollFailed as exc:
            back = f"{len(exc.returned)} machine(s) put back"
            if exc.problems:
                back += f"; NOT put back: {'; '.join(exc.problems)}"
            return [f"{exc.reason} ({back})"]
        finally:
            await machines.close()
        return []

    async def _hand_off(
        self, handoff: Handoff, action: str, subject: int, by: str, say: _Say
    ) -> None:
        """This process's machine is being replaced onto the release: queue the rest of the
        run (same request, same messages) for the process that replaces it."""
        assert self._defer is not None  # a worker runs this, and a worker has the queue
        async with self.pool.connection() as conn, conn.transaction():
            await self._defer(conn, action=action, subject=subject, by=by,
                              conversation=say.conversation, rid=say.rid, admin=say.admin,
                              handoffs=say.handoffs + 1, after=HANDOFF_SECONDS)  # fmt: skip
            detail = {"machine": handoff.machine, "moved": handoff.moved}
            await audit.record(conn, actor="persais", action=f"{action}.handed_off",
                               subject=f"{action}:{subject}", detail=detail)  # fmt: skip
        await say.progress(
            f"🚀 machine {handoff.machine} (this one) is restarting on the release; "
            f"it finishes the {action} when it is back…"
        )

    async def _mark_jobs(self, number: int, what: str, by: str) -> None:
        """The pull request is deployed (or merged): its jobs say so, and every question
        still open about it closes, saying `what` happened and `by` whom."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE jobs SET status = 'deployed', updated_at = now()"
                " WHERE pr_number = %s AND status = 'opened' RETURNING id",
                (number,),
            )
            deployed = [str(row[0]) for row in await cur.fetchall()]
            await pull_questions.close(conn, number, what, by)
        if self.memory is not None:
            for job_id in deployed:
                await self.memory.job_deployed(job_id)

    async def _rollback(self, from_release: int, by: str, say: _Say) -> None:
        async with self.pool.connection() as conn:
            current = await ledger.current(conn)
            target = await ledger.previous_good(conn, current) if current else None
        if current is None or current.id != from_release:
            now = _line(current) if current else "nothing"
            raise Refused(f"Nothing rolled back: release {from_release} is no longer in "
                          f"service (now: {now}).")  # fmt: skip
        if target is None:
            raise Refused("Nothing rolled back: there is no earlier good release.")
        await say.progress(f"↩ Rolling back to {target.label()}…")
        async with self.here.swap:
            if self.settings.fly_configured:
                try:
                    problems = await self._roll(target, current, set(), say)
                except Handoff as handoff:
                    await self._hand_off(handoff, "rollback", from_release, by, say)
                    return
                if problems:
                    raise Refused("Not rolled back: " + "; ".join(problems))
            else:
                await self.here.serve(target)
            async with self.pool.connection() as conn, conn.transaction():
                await ledger.event(conn, current.id, "rolled_back", actor=by,
                                   reason=f"rolled back by {by}")  # fmt: skip
                await ledger.event(conn, target.id, "live", actor=by, reason="rollback")
                # Going back grants nothing that was not granted before; what it grants now
                # is the target's own recorded grants, said here for the record.
                await audit.record(
                    conn,
                    actor=by,
                    action="release.rolled_back",
                    subject=f"release:{current.id}",
                    detail={"to": target.id, "grants": grants.describe(target.granted)},
                )
        await self._remember_rollback(current, by)
        text = f"↩ Rolled back: {target.label()} is in service again (was {current.label()})."
        if current.pr_number is None or current.sha is None:
            await say.result(text)
            return
        if self.settings.home_repo is None:  # the local forge: only Persais can merge there
            await say.result(text + await self._merge_revert(current, by))
            return
        question = await self._ask(
            say.conversation, "rollback",
            Reply(text + f"\nOpen a pull request that reverts #{current.pr_number}?",
                  (Choice("revert", "Open revert PR"), Choice("no", "No")),
                  question=f"revert:{current.id}"),
            requested_by=by,
        )  # fmt: skip
        await say.result(text + f"\nOpen a pull request that reverts #{current.pr_number}?",
                         approval=question.id)  # fmt: skip

    async def _remember_rollback(self, release: Release, by: str) -> None:
        """The rolled-back job's trace says so; with a reason, a lesson for its files."""
        if self.memory is None or release.job_id is None:
            return
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT detail->>'reason' FROM audit_log WHERE action = 'rollback.reason'"
                " AND subject = %s ORDER BY id DESC LIMIT 1",
                (f"release:{release.id}",),
            )
            row = await cur.fetchone()
        reason = row[0] if row else None
        try:
            await self.memory.job_ended_badly(release.job_id, how="rollback", by=by,
                                              reason=reason)  # fmt: skip
        except Exception:  # the rollback is done; memory is advice
            log.exception("could not remember the rollback of release %s", release.id)

    async def _revert(self, release_id: int, by: str, say: _Say) -> None:
        async with self.pool.connection() as conn:
            release = await ledger.get(conn, release_id)
        if release is None or release.sha is None or release.pr_number is None:
            raise Refused(f"Release {release_id} has no merge to revert.")
        try:
            pull = await self._open_revert(release, by, self.forge())
        except MergeRefused as exc:
            raise Refused(f"No revert pull request: {exc}") from None
        await say.result(
            f"↩ Revert pull request #{pull.number} opened.", links=[("View PR", pull.url)]
        )

    async def _merge_revert(self, release: Release, by: str) -> str:
        """Open the revert of `release`'s merge and merge it (the local forge); what to add
        to the rollback's result."""
        forge = self.forge()
        try:
            pull = await self._open_revert(release, by, forge)
            merged = await forge.merge(
                pull.number, sha=pull.head_sha, title=f"Revert #{release.pr_number}"
            )
        except MergeRefused as exc:
            return (
                f"\n⚠ The revert of #{release.pr_number} was not merged: {exc}. Until it is, "
                "a deploy is refused while the base still holds the rolled-back agents."
            )
        async with self.pool.connection() as conn:
            await audit.record(conn, actor=by, action="release.reverted",
                               subject=f"release:{release.id}",
                               detail={"pr": pull.number, "merge": merged})  # fmt: skip
        if self.memory is not None:
            await self.memory.request_index()
        return (
            f"\nThe revert of #{release.pr_number} is merged as {merged[:12]} "
            f"(pull request #{pull.number})."
        )

    async def _open_revert(self, release: Release, by: str, forge: Any) -> Any:
        """The revert pull request of `release`'s merge (MergeRefused: it cannot be made)."""
        assert release.sha is not None
        assert release.pr_number is not None
        base = (await forge.pull_state(release.pr_number)).base
        branch = f"persais/revert-release-{release.id}"
        title = f"Revert #{release.pr_number} (rolled back {release.label()})"
        head = await forge.revert_branch(release.sha, base, branch, title)
        pull = await forge.publish(
            job_id=f"revert-{release.id}", branch=branch, head_sha=head, base=base, title=title,
            body=f"Reverts {release.sha} (pull request #{release.pr_number}), rolled back by "
                 f"{by}.",
        )  # fmt: skip
        async with self.pool.connection() as conn:
            await audit.record(
                conn,
                actor=by,
                action="release.revert_opened",
                subject=f"release:{release.id}",
                detail={"pr": pull.number},
            )
        return pull


@dataclass
class _Say:
    """What one deploy request says in its conversation: a progress line edited in place,
    then the result (keyed, so a retried run does not say it twice)."""

    pool: AsyncConnectionPool
    conversation: str
    rid: str
    handoffs: int = 0  # runs of this request queued by a process being replaced
    admin: bool = False  # asked by an admin: may deploy a release that widens a grant

    async def progress(self, text: str) -> None:
        async with self.pool.connection() as conn:
            await outbox.put(conn, self.conversation, text, key=f"deploy:{self.rid}")

    async def result(
        self,
        text: str,
        *,
        approval: str | None = None,
        links: list[tuple[str, str]] | None = None,
        keep: bool = False,  # True: a result already said for this request stays
    ) -> None:
        async with self.pool.connection() as conn:
            await outbox.put(conn, self.conversation, text, key=f"deploy:{self.rid}:result",
                             approval=approval, links=links, replace=not keep)  # fmt: skip


def _line(release: Release) -> str:
    at = release.since.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    who = f" by {release.pressed_by}" if release.source == "merge" else ""
    why = f": {release.reason[:200]}" if release.status == "failed" and release.reason else ""
    return f"{release.label()} — {release.status} since {at}{who}{why}"


def _on_fly(release: Release | None) -> str | None:
    """PERSAIS_RELEASE for a release: none for the image's own agents."""
    return release.sha if release is not None and release.source == "merge" else None


def _title(pull: Any) -> str:
    return str(pull.branch)
