"""`/rollback` and the revert of a rolled-back merge.

A rollback moves the release pointer back to the previous good release (local: the agents
swap in process; Fly: the machines move back). The merge it undid stays on the base branch
until its revert is merged (`app.deploy.reverts`): on the local forge Persais opens and
merges the revert at once; on GitHub it offers to open the revert pull request for a person
to merge. A rollback's reason becomes a lesson for the rolled-back job's files.
"""

from __future__ import annotations

import logging
from typing import Any

from app import audit
from app.agents import grants
from app.agents.base import Choice, Reply
from app.deploy import ledger, machines
from app.deploy.context import Context, Refused
from app.deploy.fly import Handoff
from app.deploy.ledger import Release
from app.deploy.telling import Say, line
from mechanic.forge import MergeRefused

log = logging.getLogger(__name__)


class Rollbacks:
    def __init__(self, context: Context) -> None:
        self.context = context

    async def offer(self, by: str, reason: str = "") -> Reply:
        """`/rollback [reason]`: ask to confirm; the reason becomes a lesson when it is done."""
        async with self.context.pool.connection() as conn:
            current = await ledger.current(conn)
            target = await ledger.previous_good(conn, current) if current else None
            if current is None or target is None:
                return Reply("There is no earlier release to roll back to.")
            if reason:
                await audit.record(conn, actor=by, action="rollback.reason",
                                   subject=f"release:{current.id}",
                                   detail={"reason": reason[:500]})  # fmt: skip
        text = (
            f"In service: {line(current)}\nPrevious: {line(target)}\n"
            + (f"Reason: {reason[:500]}\n" if reason else "")
            + f"Roll back to release {target.id}?"
        )
        return Reply(
            text,
            (Choice("rollback", "Roll back"), Choice("cancel", "Cancel")),
            question=f"rollback:{current.id}",
        )

    async def rollback(self, from_release: int, by: str, say: Say) -> None:
        context = self.context
        async with context.pool.connection() as conn:
            current = await ledger.current(conn)
            target = await ledger.previous_good(conn, current) if current else None
        if current is None or current.id != from_release:
            now = line(current) if current else "nothing"
            raise Refused(f"Nothing rolled back: release {from_release} is no longer in "
                          f"service (now: {now}).")  # fmt: skip
        if target is None:
            raise Refused("Nothing rolled back: there is no earlier good release.")
        await say.progress(f"↩ Rolling back to {target.label()}…")
        async with context.here.swap:
            if context.settings.fly_configured:
                try:
                    problems = await machines.roll(context, target, current, set(), say)
                except Handoff as handoff:
                    await machines.hand_off(context, handoff, "rollback", from_release, by, say)
                    return
                if problems:
                    raise Refused("Not rolled back: " + "; ".join(problems))
            else:
                await context.here.serve(target)
            async with context.pool.connection() as conn, conn.transaction():
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
        await self._remember(current, by)
        text = f"↩ Rolled back: {target.label()} is in service again (was {current.label()})."
        if current.pr_number is None or current.sha is None:
            await say.result(text)
            return
        if context.settings.home_repo is None:  # the local forge: only Persais can merge there
            await say.result(text + await self._merge_revert(current, by))
            return
        question = await context.ask(
            say.conversation, "rollback",
            Reply(text + f"\nOpen a pull request that reverts #{current.pr_number}?",
                  (Choice("revert", "Open revert PR"), Choice("no", "No")),
                  question=f"revert:{current.id}"),
            requested_by=by,
        )  # fmt: skip
        await say.result(text + f"\nOpen a pull request that reverts #{current.pr_number}?",
                         approval=question.id)  # fmt: skip

    async def _remember(self, release: Release, by: str) -> None:
        """The rolled-back job's trace says so; with a reason, a lesson for its files."""
        memory = self.context.memory
        if memory is None or release.job_id is None:
            return
        async with self.context.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT detail->>'reason' FROM audit_log WHERE action = 'rollback.reason'"
                " AND subject = %s ORDER BY id DESC LIMIT 1",
                (f"release:{release.id}",),
            )
            row = await cur.fetchone()
        reason = row[0] if row else None
        try:
            await memory.job_ended_badly(release.job_id, how="rollback", by=by,
                                         reason=reason)  # fmt: skip
        except Exception:  # the rollback is done; memory is advice
            log.exception("could not remember the rollback of release %s", release.id)

    async def revert(self, release_id: int, by: str, say: Say) -> None:
        async with self.context.pool.connection() as conn:
            release = await ledger.get(conn, release_id)
        if release is None or release.sha is None or release.pr_number is None:
            raise Refused(f"Release {release_id} has no merge to revert.")
        try:
            pull = await self._open_revert(release, by, self.context.forge())
        except MergeRefused as exc:
            raise Refused(f"No revert pull request: {exc}") from None
        await say.result(
            f"↩ Revert pull request #{pull.number} opened.", links=[("View PR", pull.url)]
        )

    async def _merge_revert(self, release: Release, by: str) -> str:
        """Open the revert of `release`'s merge and merge it (the local forge); what to add
        to the rollback's result."""
        forge = self.context.forge()
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
        async with self.context.pool.connection() as conn:
            await audit.record(conn, actor=by, action="release.reverted",
                               subject=f"release:{release.id}",
                               detail={"pr": pull.number, "merge": merged})  # fmt: skip
        if self.context.memory is not None:
            await self.context.memory.request_index()
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
        async with self.context.pool.connection() as conn:
            await audit.record(
                conn,
                actor=by,
                action="release.revert_opened",
                subject=f"release:{release.id}",
                detail={"pr": pull.number},
            )
        return pull
