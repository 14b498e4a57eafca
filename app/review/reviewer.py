"""One review of one pull request head, against GitHub, start to finish.

    claim (supersede older heads) → lock the pull request → config from the default branch
    → check run in_progress → files (and, on a re-review, what changed since the head
    reviewed before) → static findings and grant changes → the model's findings → pin to
    diff lines, drop what was said before → one review → check run concluded

One review is in flight per pull request (a Postgres advisory lock). A newer head marks
older reviews superseded; a superseded review notices at its next step (and while it waits
for the model), concludes its check run as cancelled and posts nothing. Each step is safe to
run again: a retried delivery reuses its check run and never posts a second review.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from githubkit import GitHub
from psycopg_pool import AsyncConnectionPool

from app import audit
from app.costs.books import Costs
from app.db import locks
from app.github.client import GitHubApp
from app.github.once import first_time
from app.review import compose, fingerprints, pauses, ruff_config, static
from app.review import grants as review_grants
from app.review import guidance as review_guidance
from app.review import model as model_review
from app.review.config import CONFIG_PATH, Loaded, ReviewConfig, parse
from app.review.diff import Diff
from app.review.findings import Finding
from app.review.pull import PullOnGitHub
from mechanic.metering import BudgetReached

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_FILES = 300  # files read for the static checks
SUPERSEDE_POLL = 0.5


@dataclass(frozen=True)
class ReviewRequest:
    installation_id: int
    repository: str  # owner/name
    number: int
    head_sha: str
    trigger: str  # the webhook action, or "command"
    delivery: str  # unique per request: a retried delivery is the same review
    force: bool = False  # /review: review this head even if it was reviewed


@dataclass
class Outcome:
    status: str  # posted | skipped | superseded | failed
    reason: str = ""
    review_id: int | None = None
    check_run_id: int | None = None
    conclusion: str | None = None
    comments: int = 0
    findings: list[Finding] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds


class Superseded(Exception):
    pass


Notify = Callable[[ReviewRequest, Outcome, dict[str, Any]], Awaitable[None]]
Lessons = Callable[[str, list[str]], Awaitable[list[str]]]  # (repository, paths) -> lessons


class Reviewer:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        github: GitHubApp,
        model: model_review.Model | None,
        *,
        notify: Notify | None = None,
        lessons: Lessons | None = None,
        costs: Costs | None = None,
    ) -> None:
        self.pool = pool
        self.github = github
        self.model = model
        self.notify = notify
        self.lessons = lessons
        self.costs = costs  # None: model calls are not counted, and no budget applies

    async def review(self, request: ReviewRequest) -> Outcome:
        review_id, status = await self._claim(request)
        if status in ("posted", "skipped", "superseded"):
            return Outcome(status, "this request was handled before")
        if not request.force and await pauses.paused(self.pool, request.repository, request.number):
            return await self._finish(review_id, Outcome("skipped", "paused with /pause"))
        if not request.force and await self._reviewed_before(request, review_id):
            return await self._finish(review_id, Outcome("skipped", "this head was reviewed"))
        run = _Run(self, request, review_id)
        # One HTTP client for the whole review (githubkit otherwise opens one per request).
        async with self._pull_lock(request), run.client:
            try:
                outcome = await run.go()
            except Superseded:
                outcome = Outcome("superseded", "a newer head arrived")
                await run.cancel_check_run()
            except Exception as exc:
                await run.fail_check_run(exc)
                await self._finish(review_id, Outcome("failed", type(exc).__name__))
                raise
        await self._finish(review_id, outcome)
        if outcome.status == "posted" and self.notify is not None:
            try:
                await self.notify(request, outcome, run.pull)
            except Exception:  # a chat hiccup must not fail the review
                log.exception("could not tell the chat about review %s", review_id)
        return outcome

    async def _claim(self, request: ReviewRequest) -> tuple[int, str]:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE reviews SET status = 'superseded', reason = %s, finished_at = now()"
                " WHERE repository = %s AND pull_number = %s AND head_sha <> %s"
                " AND status IN ('queued', 'running')",
                (f"superseded by {request.head_sha[:7]}", request.repository, request.number,
                 request.head_sha),
            )  # fmt: skip
            cur = await conn.execute(
                "INSERT INTO reviews (repository, pull_number, head_sha, trigger, delivery)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (delivery) DO UPDATE"
                " SET delivery = EXCLUDED.delivery RETURNING id, status",
                (request.repository, request.number, request.head_sha, request.trigger,
                 request.delivery),
            )  # fmt: skip
            row = await cur.fetchone()
        assert row is not None
        return int(row[0]), str(row[1])

    async def _reviewed_before(self, request: ReviewRequest, review_id: int) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM reviews WHERE repository = %s AND pull_number = %s"
                " AND head_sha = %s AND id <> %s AND status IN ('posted', 'running', 'queued')",
                (request.repository, request.number, request.head_sha, review_id),
            )
            return await cur.fetchone() is not None

    def _pull_lock(self, request: ReviewRequest) -> AbstractAsyncContextManager[None]:
        return locks.held(self.pool, f"review:{request.repository}#{request.number}")

    async def _finish(self, review_id: int, outcome: Outcome) -> Outcome:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE reviews SET status = %s, reason = %s, review_id = %s, conclusion = %s,"
                " comments = %s, findings = %s, finished_at = now()"
                " WHERE id = %s AND status NOT IN ('posted', 'superseded')",
                (outcome.status, outcome.reason or None, outcome.review_id, outcome.conclusion,
                 outcome.comments, len(outcome.findings), review_id),
            )  # fmt: skip
            await audit.record(
                conn, actor="persais", action=f"review.{outcome.status}",
                subject=f"review:{review_id}",
                detail={"reason": outcome.reason, "review": outcome.review_id,
                        "conclusion": outcome.conclusion, "comments": outcome.comments},
            )  # fmt: skip
        return outcome


class _Run:
    """The steps of one review, with what they learn along the way."""

    def __init__(self, reviewer: Reviewer, request: ReviewRequest, review_id: int) -> None:
        self.reviewer = reviewer
        self.pool = reviewer.pool
        self.request = request
        self.review_id = review_id
        self.client: GitHub[Any] = reviewer.github.installation(request.installation_id)
        self.github = PullOnGitHub(
            self.client, request.repository, request.number, request.head_sha
        )
        self.check_run_id: int | None = None
        self.pull: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.config = ReviewConfig()  # the default branch's (`_config`)

    async def go(self) -> Outcome:
        started = time.monotonic()
        await self._start()
        self.pull = await self.github.get()
        why_not = self._not_reviewable()
        if why_not:
            return Outcome("skipped", why_not)
        loaded = await self._config()
        if not loaded.config.review.enabled:
            return Outcome("skipped", f"review is off in {CONFIG_PATH}")
        await self._check_run_started()
        await self._still_current()

        diff = Diff.from_github(await self.github.files())
        since = await self._since()
        scope = diff
        if since is not None:
            changed = await self.github.changed_since(since)
            if changed is None:
                since = None  # a force-push: the earlier head is not an ancestor
            else:
                scope = diff.restricted_to(changed)
        config = loaded.config.review
        scope = scope.restricted_to(p for p in scope.files if not config.skips(p))
        await self._still_current()

        t = time.monotonic()
        wanted = sorted(set(static.wanted(scope)) | set(review_grants.manifests(scope)))
        contents = await self.github.contents(scope, wanted[:MAX_FILES])
        head_branch = str(self.pull["head"]["ref"])
        checked = await static.check(
            scope, contents, head_branch=head_branch, ruff_config=await self._ruff_config(scope)
        )
        findings = checked.findings
        findings += review_grants.findings(scope, contents, await self._base_manifests(scope))
        self.timings["static"] = time.monotonic() - t
        await self._still_current()

        notes: list[str] = list(checked.notes)
        if loaded.problem:
            notes.append(f"⚠️ {loaded.problem}; the defaults were used.")
        t = time.monotonic()
        notes.append(await self._model_findings(scope, findings))
        self.timings["model"] = time.monotonic() - t

        findings, minor = compose.split(findings, config.severity_floor, config.min_confidence)
        posted, standing, dismissed = await self._earlier(scope)
        pinned = compose.pin(findings, diff, posted, minor)
        counted = compose.undismissed(findings, diff, dismissed)
        verdict = compose.conclusion(counted + standing)
        body = compose.summary(
            head=self.request.head_sha, since=since, pinned=pinned, findings=findings,
            notes=[n for n in notes if n],
        )  # fmt: skip
        await self._still_current()
        review_id = None
        if since is None or pinned.comments or pinned.loose or pinned.digest:
            review_id = await self.github.post_review(body, pinned.comments)
        await self._record(pinned, since)
        await self._check_run_completed(verdict, body, len(pinned.comments))
        self.timings["total"] = time.monotonic() - started
        return Outcome(
            "posted", "", review_id, self.check_run_id, verdict, len(pinned.comments), findings,
            self.timings,
        )  # fmt: skip

    # --- the steps --------------------------------------------------------------------

    async def _start(self) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE reviews SET status = 'running', started_at = now()"
                " WHERE id = %s AND status IN ('queued', 'running', 'failed')"
                " RETURNING check_run_id",
                (self.review_id,),
            )
            row = await cur.fetchone()
        if row is None:
            raise Superseded
        self.check_run_id = row[0]

    def _not_reviewable(self) -> str:
        if self.pull.get("state") != "open":
            return "the pull request is closed"
        if self.pull.get("draft") and not self.request.force:
            return "a draft: reviewed when it is ready"
        if self.pull["head"]["sha"] != self.request.head_sha:
            raise Superseded
        return ""

    async def _still_current(self) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT status FROM reviews WHERE id = %s", (self.review_id,))
            row = await cur.fetchone()
        if row is None or row[0] == "superseded":
            raise Superseded

    async def _guarded(self, work: Awaitable[T]) -> T:
        """Wait for `work`, but stop as soon as a newer head supersedes this review."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=SUPERSEDE_POLL)
                if done:
                    return task.result()
                await self._still_current()
        finally:
            task.cancel()

    async def _config(self) -> Loaded:
        default = str(self.pull["base"]["repo"]["default_branch"])
        text, sha = await self.github.read(CONFIG_PATH, default)
        loaded = parse(text)
        self.config = loaded.config.review
        notice = f"config:{self.request.repository}:{sha}"
        if loaded.problem and sha and await first_time(self.pool, notice):
            await self.github.comment(
                f"⚠️ {loaded.problem} (on `{default}`). Persais uses its defaults until it is fixed."
            )
        return loaded

    async def _check_run_started(self) -> None:
        if self.check_run_id is not None:  # a retried delivery: the same check run
            return
        self.check_run_id = await self.github.start_check_run()
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE reviews SET check_run_id = %s WHERE id = %s",
                (self.check_run_id, self.review_id),
            )

    async def _check_run_completed(
        self, conclusion: compose.Conclusion, summary: str, inline: int
    ) -> None:
        assert self.check_run_id is not None
        title = {"success": "No problems found", "neutral": "Warnings",
                 "failure": "Problems found"}[conclusion]  # fmt: skip
        await self.github.conclude_check_run(
            self.check_run_id, conclusion, f"{title} ({inline} inline)", summary
        )

    async def cancel_check_run(self) -> None:
        if self.check_run_id is not None:
            await self.github.conclude_check_run(
                self.check_run_id, "cancelled", "Superseded", "A newer push is reviewed instead."
            )

    async def fail_check_run(self, exc: Exception) -> None:
        if self.check_run_id is None:
            return
        try:
            await self.github.conclude_check_run(
                self.check_run_id, "neutral", "The review could not finish",
                f"{type(exc).__name__}; it will be retried.",
            )  # fmt: skip
        except Exception:  # the original failure is what matters
            log.exception("could not conclude check run %s", self.check_run_id)

    async def _since(self) -> str | None:
        """The head reviewed last on this pull request (another head), if any."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT head_sha FROM reviews WHERE repository = %s AND pull_number = %s"
                " AND status = 'posted' AND head_sha <> %s ORDER BY finished_at DESC LIMIT 1",
                (self.request.repository, self.request.number, self.request.head_sha),
            )
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def _base_manifests(self, scope: Diff) -> dict[str, str]:
        """The changed agents' manifests on the base branch (what they were granted there)."""
        base = str(self.pull["base"]["ref"])
        found: dict[str, str] = {}
        for path in review_grants.manifests(scope)[:MAX_FILES]:
            text, _ = await self.github.read(path, base)
            if text is not None:
                found[path] = text
        return found

    async def _model_findings(self, scope: Diff, findings: list[Finding]) -> str:
        model = self.reviewer.model
        if model is None:
            return "The model review is off (no LLM_API_KEY); static checks only."
        if not scope.files:
            return ""
        books = (
            self.reviewer.costs.account("review", str(self.review_id))
            if self.reviewer.costs is not None
            else contextlib.nullcontext()
        )
        try:
            async with books:  # each call counted, and refused past a budget
                result = await self._guarded(
                    model_review.review(
                        model,
                        str(self.pull.get("title") or ""),
                        str(self.pull.get("body") or ""),
                        scope,
                        await self._lessons(scope),
                        guidance=await self._guidance(scope),
                    )
                )
        except Superseded:
            raise
        except BudgetReached as exc:  # the static review stands, and says why it is alone
            return f"The model review stopped: {exc}; static checks only."
        except Exception as exc:  # the model failing leaves the static review standing
            log.warning("the model review failed: %s", exc)
            return f"The model review failed ({type(exc).__name__}); static checks only."
        findings += result.findings
        note = result.summary
        if result.dropped:
            note += f" ({result.dropped} of the model's findings did not fit and were left out.)"
        return note.strip()

    async def _lessons(self, scope: Diff) -> list[str]:
        """What the maintainers taught about these paths (memory); none if it fails."""
        if self.reviewer.lessons is None:
            return []
        try:
            return await self.reviewer.lessons(self.request.repository, list(scope.files))
        except Exception:  # a lesson is advice: the review goes on without it
            log.exception("could not read the lessons for %s", self.request.repository)
            return []

    def _default_branch(self) -> str:
        return str(self.pull["base"]["repo"]["default_branch"])

    async def _guidance(self, scope: Diff) -> str:
        """What the maintainers wrote for reviewers (`review.paths` instructions, AGENTS.md
        or the like), from the default branch; none if it cannot be read."""
        try:
            return await review_guidance.read(
                self.github.read, self._default_branch(), self.config, list(scope.files)
            )
        except Exception:  # guidance is advice: the review goes on without it
            log.exception("could not read the guidance for %s", self.request.repository)
            return ""

    async def _ruff_config(self, scope: Diff) -> ruff_config.RuffConfig | None:
        """The default branch's ruff configuration, when there is Python to check."""
        if not static.wanted(scope):
            return None
        return await ruff_config.read(self.github.read, self._default_branch())

    async def _earlier(self, scope: Diff) -> tuple[set[str], list[Finding], set[str]]:
        """What was said on this pull request before: every fingerprint (not to be said
        again), from Persais's records and from GitHub's (the source of truth, read back
        each time), and the findings on files this review did not look at again (they still
        count for the check run's verdict, unless minor or dismissed), and what was
        dismissed (`/ignore`, 👎)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT fingerprint, path, line, severity, digest FROM review_findings"
                " WHERE repository = %s AND pull_number = %s",
                (self.request.repository, self.request.number),
            )
            rows = await cur.fetchall()
            cur = await conn.execute(
                "SELECT fingerprint FROM review_ignores WHERE repository = %s AND pull_number = %s",
                (self.request.repository, self.request.number),
            )
            ignored = {row[0] for row in await cur.fetchall()}
        on_github = await self._on_github()
        dismissed = ignored | on_github.dismissed
        standing = [
            Finding(path, line, severity, "", "earlier")
            for fingerprint, path, line, severity, digest in rows
            if path not in scope and not digest and fingerprint not in dismissed
        ]
        return {row[0] for row in rows} | on_github.posted | dismissed, standing, dismissed

    async def _on_github(self) -> fingerprints.OnGitHub:
        app, request = self.reviewer.github, self.request
        owner, repo = request.repository.split("/", 1)

        async def may_write(login: str) -> bool:
            return await app.may_command(request.installation_id, owner, repo, login)

        return await fingerprints.read_back(
            self.client, request.repository, request.number, bot=await app.bot_login(),
            may_write=may_write,
        )  # fmt: skip

    async def _record(self, pinned: compose.Pinned, since: str | None) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE reviews SET since_sha = %s WHERE id = %s", (since, self.review_id)
            )
            for said in pinned.fingerprints:
                await conn.execute(
                    "INSERT INTO review_findings (repository, pull_number, fingerprint, review,"
                    " path, line, severity, digest) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (self.request.repository, self.request.number, said.fingerprint,
                     self.review_id, said.path, said.line, said.severity, said.digest),
                )  # fmt: skip
