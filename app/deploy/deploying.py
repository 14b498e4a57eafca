"""What a worker does with a queued deploy.

Refuse unless the pull request is open, its head is the head the Mechanic validated and its
checks are green → squash-merge through the forge → cut a release at the merge commit →
materialise `dynamic/` at it → load it beside the agents in service and verify it (the
changed agents loaded, answering their generated tests' smoke messages) → local: put it in
service in one assignment; Fly: move the machines → record it live. A release that fails
verification never serves: the previous one stays, and the chat is told why. A change
outside `dynamic/` and `tests/dynamic/` is merged but not hot-deployed.

Every step is safe to run again: a retried deploy finds the pull request merged, or its
release cut, and carries on from there. Grants are checked again here against the release in
service (before the merge, and on the merged manifests before the release is cut), and a
release records its grants in the ledger.
"""

from __future__ import annotations

from typing import Any

from app import audit
from app.agents import grants
from app.agents.grants import Change
from app.deploy import files, granting, ledger, machines, reverts, verify
from app.deploy.context import Context, Refused
from app.deploy.fly import Handoff
from app.deploy.here import Running
from app.deploy.ledger import Release
from app.deploy.telling import Say, line
from app.orchestrator import pull_questions
from mechanic.forge import MergeRefused


class Deploying:
    def __init__(self, context: Context) -> None:
        self.context = context

    async def deploy(self, number: int, by: str, say: Say) -> None:
        context = self.context
        forge = context.forge()
        async with context.pool.connection() as conn:
            existing = await ledger.for_pull(conn, context.repository, number)
        if existing is not None and existing.status not in ("cut", "loading"):
            # A retried run of a request that got its answer keeps that answer.
            await say.result(f"Pull request #{number} is already {line(existing)}.", keep=True)
            return
        try:
            pull = await forge.pull_state(number)
        except LookupError as exc:
            raise Refused(f"Not deployed: {exc}.") from None
        job = await context.job_for(number)
        job_id, validated = (job[0], job[2]) if job else (None, None)
        if existing is not None:  # a deploy interrupted after its release was cut
            await self.load(existing, say, await forge.changed_paths(existing.sha))
            return
        if pull.state == "merged" and pull.merge_sha and pull.head_sha == validated:
            merged = pull.merge_sha  # merged by an earlier run of this deploy
        else:
            await self._check(pull, validated, forge)
            await self._not_held(
                number, forge, f"refs/heads/{pull.base}", await reverts.touched_by_pull(forge, pull)
            )
            if not say.admin:  # against the release in service now, before anything merges
                found = await granting.of_pull(context.pool, context.settings, forge, number)
                await self._may_grant(number, by, found)
            await say.progress(f"🚀 Pull request #{number}: merging…")
            try:
                merged = await forge.merge(number, sha=pull.head_sha, title=str(pull.branch))
            except MergeRefused as exc:
                raise Refused(f"Not deployed: {exc}") from None
            async with context.pool.connection() as conn:
                await audit.record(conn, actor=by, action="deploy.merged", subject=f"pr:{number}",
                                   detail={"merge": merged, "head": pull.head_sha})  # fmt: skip
            if context.memory is not None and context.settings.home_repo is None:
                # The local forge's branch moved (GitHub says so with a push instead).
                await context.memory.request_index()
        paths = await forge.changed_paths(merged)
        outside = files.hot_deployable(paths)
        if outside:
            await self.mark_jobs(number, "merged", by)
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
        granted = grants.of_folder((await context.here.files(merged)).agents)
        async with context.pool.connection() as conn, conn.transaction():
            current = await ledger.current(conn) or await ledger.image(
                conn, repository=context.repository, commit=context.build_commit,
                grants=grants.of_folder(context.settings.resolved_agents_dir()),
            )  # fmt: skip
            found = grants.widened(current.granted, granted)
            if not say.admin:  # a refusal writes nothing here (its audit has its own connection)
                await self._may_grant(number, by, found, merged=True)
            release = await ledger.cut(
                conn, sha=merged, repository=context.repository, pr_number=number,
                job_id=job_id, pressed_by=by, conversation=say.conversation,
                previous=current.id, grants=granted,
            )  # fmt: skip
            detail = {"sha": merged, "pr": number, "grants": [str(c) for c in found]}
            await audit.record(
                conn, actor=by, action="release.cut", subject=f"release:{release.id}", detail=detail
            )
        await self.load(release, say, paths)

    async def _not_held(
        self, number: int, forge: Any, ref: str, deploying: set[str] | frozenset[str],
        *, merged: bool = False,
    ) -> None:  # fmt: skip
        """Refuse a release that would serve a rolled-back agent again (its revert is not
        merged), unless the pull request itself touches that agent."""
        found = await reverts.held(self.context.pool, forge, ref, deploying=frozenset(deploying))
        if not found:
            return
        base = (await forge.pull_state(number)).base
        why = "; ".join(held.line(base) for held in found)
        async with self.context.pool.connection() as conn:
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
        await self.context.refused_grants(number, by, found)
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
            async with self.context.pool.connection() as conn:
                await audit.record(
                    conn,
                    actor="persais",
                    action="deploy.refused",
                    subject=f"pr:{pull.number}",
                    detail={"why": problems},
                )
            raise Refused("Not deployed: " + "; ".join(problems) + ".")

    async def load(self, release: Release, say: Say, paths: list[str]) -> None:
        """Load a cut release beside the agents in service, verify it, and put it in service
        (local) or move the machines onto it (Fly); a failing one never serves."""
        assert release.sha is not None
        context = self.context
        registry = context.registry
        fly = context.settings.fly_configured
        async with context.pool.connection() as conn:
            previous = await ledger.get(conn, release.previous) if release.previous else None
            await ledger.event(conn, release.id, "loading", actor="persais")
        await say.progress(f"🚀 {release.label()}: loading…")
        changed = files.agents_touched(paths)
        synced = await context.here.files(release.sha)
        async with context.here.swap:
            staged = await registry.stage(synced.agents, release.sha)
            problems = await verify.problems(staged, registry.current, changed, synced)
            if fly:
                await registry.discard(staged)
                if not problems:
                    expect = changed & set(staged.agents)
                    try:
                        problems = await machines.roll(context, release, previous, expect, say)
                    except Handoff as handoff:
                        by = release.pressed_by or "persais"
                        subject = release.pr_number or 0
                        await machines.hand_off(context, handoff, "deploy", subject, by, say)
                        return
            elif problems:
                await registry.discard(staged)
            else:
                await registry.promote(staged)
            async with context.pool.connection() as conn, conn.transaction():
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
            if not problems and not fly:
                context.here.running = Running(live, release.sha, synced.agents)
        if problems:
            back = previous.label() if previous else "the previous release"
            await say.result(
                f"✗ {release.label()} failed verification, so it was rolled back: "
                + "; ".join(problems)
                + f".\n{back} stays in service; its agents still answer."
            )
            return
        await self.mark_jobs(release.pr_number or 0, "deployed", release.pressed_by or "persais")
        commands = sorted(
            f"/{staged.agents[name].manifest.command}" for name in changed if name in staged.agents
        )
        ready = f": {', '.join(commands)} answering" if commands else ""
        given = grants.widened(previous.granted if previous else {}, release.granted)
        granted = "".join(f"\n🔑 granted {change}" for change in given)
        await say.result(f"✅ {release.label()} is live{ready}.{granted}")

    async def mark_jobs(self, number: int, what: str, by: str) -> None:
        """The pull request is deployed (or merged): its jobs say so, and every question
        still open about it closes, saying `what` happened and `by` whom."""
        async with self.context.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE jobs SET status = 'deployed', updated_at = now()"
                " WHERE pr_number = %s AND status = 'opened' RETURNING id",
                (number,),
            )
            deployed = [str(row[0]) for row in await cur.fetchall()]
            await pull_questions.close(conn, number, what, by)
        if self.context.memory is not None:
            for job_id in deployed:
                await self.context.memory.job_deployed(job_id)
